"""README.md is read on GitHub and PyPI, outside the docs site, so `mkdocs build --strict` (in .ci/run)
does not check its links: a page moved or renamed in docs/ would leave the README pointing nowhere."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_relative_links_resolve():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t]
    assert targets, "the README links its docs pages"
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"
