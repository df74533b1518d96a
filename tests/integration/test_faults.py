"""Placeholder, filled in by the issue 6 work."""

import unittest

if __name__ == "__main__":
    unittest.main()
