"""What every trainer and command shares: the device, the process group, atomic file writes.

A layer below `train/`, `inference/`, `hf/` and `commands/` (it imports only torch and
`coconutblt.errors`), so that a second device picker or a second atomic writer has no reason
to exist.
"""
