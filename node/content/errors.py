"""Owns :class:`ContentError`, the one error every malformed CID, block or tree raises."""

from __future__ import annotations


class ContentError(ValueError):
    """Content is malformed or does not match its CID; the message names what and where.

    Raised for bad CID text or bytes, blocks whose hash is not their CID, blocks that
    are not valid dag-pb or UnixFS, and trees this package cannot represent (special
    files, directories that would need HAMT sharding). Never a bare protobuf error.
    """
