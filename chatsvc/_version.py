"""
The version of chatsvc.
"""

__version__ = "0.1.0"
