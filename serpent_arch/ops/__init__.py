"""Low-level operators of Serpent. No module in this package imports basicsr (importing
``serpent_arch.ops`` still runs ``serpent_arch/__init__.py`` first).

Public API: :func:`selective_scan` (mamba-ssm ``selective_scan_fn`` compatible, with a ``backend``
argument), :func:`selective_scan_ref`, :func:`resolve_backend`, :func:`available_backends` and
:data:`BACKENDS`.
"""

from .selective_scan import BACKENDS, available_backends, resolve_backend, selective_scan, selective_scan_ref

__all__ = ["BACKENDS", "available_backends", "resolve_backend", "selective_scan", "selective_scan_ref"]
