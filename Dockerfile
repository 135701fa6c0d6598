# gantry's images, built from files prepared beside this Dockerfile (no base
# image is pulled, so builds are reproducible and work offline):
#   gantry               the static musl binary
#   ca-certificates.crt  CA bundle, for forges and registries behind TLS
#   busybox              Debian's busybox-static, for the shell variant
#
# Targets:
#   minimal  FROM scratch: the GitHub container actions (ENTRYPOINT gantry)
#   shell    minimal + busybox: GitLab jobs, which need a shell (tag suffix -shell)
FROM scratch AS minimal
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY gantry /usr/local/bin/gantry
ENV PATH=/usr/local/bin:/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
LABEL org.opencontainers.image.title="gantry" \
      org.opencontainers.image.description="CI/CD for large language models" \
      org.opencontainers.image.source="https://github.com/gantry-dev/gantry" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/usr/local/bin/gantry"]

FROM minimal AS shell
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENTRYPOINT []
CMD ["/bin/sh"]
