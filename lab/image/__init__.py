"""Node images: a Debian root filesystem with the pair's daemons and the lab's own code, made
from Debian's archive on this machine (no registry) and imported into the lab's Docker daemon."""
