"""seal_runner.domains"""
