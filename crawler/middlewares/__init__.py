"""Downloader middlewares of xunjian, one job each."""
