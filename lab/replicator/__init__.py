"""The replicated disk: a DRBD-8.4-compatible userspace substitute (FUSE + loop + TCP).

Modules, one job each: ``resfile`` (parse ``.res``), ``handshake`` (UUID rules + after-sb
policies), ``metadata`` (on-disk UUIDs/flags/bitmap), ``wire`` (framing + HMAC auth),
``daemon`` (per-node replicator), ``device`` (loop + /dev/drbdN), ``drbdadm`` (the CLI),
``service`` (host-side start/stop/status for the lab), ``bench`` (measurements).
"""
