"""The measuring instrument: probes that run inside client namespaces, their record formats,
and the helpers that turn their streams into a timeline (see lab.timeline, lab.checks)."""
