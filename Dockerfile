# The collector's container image: `cargo xtask image` (tag collector:dev) stages the release
# daemon and exactly the shared objects `ldd` lists for it (glibc's libc, libm, libgcc_s and
# the dynamic loader, at the paths the binary asks for) into target/image/context/rootfs, and
# builds this file with that directory as the context. Nothing is pulled: no base image, no
# shell, no package manager; about 16 MB.
#
# It runs as uid 0 with every capability dropped but those the DaemonSet adds
# (deploy/kubernetes/daemonset.yaml): capabilities that Docker or Kubernetes add reach a
# non-root process only as ambient capabilities, which neither sets, and file capabilities
# are ignored under no_new_privs (`allowPrivilegeEscalation: false`).
FROM scratch
ARG ROOTFS=rootfs
COPY ${ROOTFS}/ /
ENTRYPOINT ["/usr/bin/collector-daemon"]
CMD ["run"]
