"""Homogenisation over time: release dates, cohorts and the trend of similarity across releases."""
