"""The replicated disk: a DRBD-8.4-compatible userspace substitute (FUSE + loop + TCP).

Modules, one job each: ``resfile`` (parse ``.res``), ``handshake`` (UUID rules + after-sb
policies, pure), ``metadata`` (on-disk UUIDs/flags/activity log/bitmap), ``wire`` (framing +
cram-hmac auth), ``loopholder`` (self-clearing loop device), ``device`` (/dev/drbdN, in-use
checks), ``events`` (events2-like JSON lines), ``drbdadm`` (the CLI heartbeat's ``drbddisk``
calls), ``service`` (host-side start/stop/status/bootstrap for the lab), ``bench``
(measurements), ``cli`` (``lab drbd``, ``lab drbd-bench``). The per-node daemon: ``daemon``
(wiring, ``main``), ``core`` (shared state, events, handlers), ``fusedev`` (the kernel's FUSE
protocol for one file), ``datapath`` (application I/O on both disks), ``disk`` (the backing
image), ``connection`` (the peer link and its requests), ``negotiate`` (the handshake's I/O),
``resync``, ``verify`` (online verify), ``resize`` (online grow), ``roles`` (Primary/Secondary,
``/dev/drbdN``), ``control`` (drbdadm's socket), ``paths``.

Semantics worth knowing (each is DRBD 8.4's unless said otherwise):

* Protocol C by default (the seed's): a write completes after both disks wrote it; flushes are
  forwarded and wait for both. ``protocol A`` (complete locally, replicate behind) and ``B``
  (peer acknowledges on receipt) are honoured too, for comparison.
* A peer that does not answer a pending request within ``timeout`` (tenths of a second,
  default 6 s) is dropped -- unless it still answers something, then up to ``ko-count`` times
  that; an idle link is pinged every ``ping-int`` (10 s) and dropped after ``ping-timeout``
  (0.5 s). So a crashed peer is noticed only after up to ~10.5 s, exactly like DRBD: a cluster
  manager with a shorter deadtime must be given a shorter ``ping-int``.
* Secondary: ``/dev/drbdN`` is a symlink to the FUSE file, whose open fails with EMEDIUMTYPE.
  Primary: a block device node over a loop device that clears itself when its last opener
  goes, so crashes and teardowns leave no loop devices behind.
* The daemon lives in a private copy of the node's mount namespace (see
  ``daemon.private_mount_namespace``): otherwise its own exit could unmount the filesystem on
  /dev/drbdN and wait forever for itself.
* ``.res`` files: the seed's blog-mangled curly quotes are tolerated (``strict=True`` refuses
  them); errors read ``file:line: problem``.
* Online verify (``drbdadm verify``, needs ``verify-alg``) marks differing blocks out of sync
  on both nodes and calls ``out-of-sync``; a disconnect/connect resyncs them, as in DRBD.
* ``drbdadm resize`` grows the device online (connected) to the smaller of the two grown
  backing disks, moving the internal metadata to the new end; the new storage resyncs from
  the Primary. Not implemented: shrinking, ``--assume-peer-has-space``/``--assume-clean``.
* Not implemented: dual-primary I/O (``allow-two-primaries`` only lifts the role check),
  ``wfc-timeout`` waits at start-up.
"""
