# syntax=docker/dockerfile:1
# The ebpf-xds image: control plane and node agent in one image; the first argument picks the
# role (`control-plane`, `agent`, `apply`, ...). Used by deploy/ (Kubernetes) and docker-compose.yml.
#
#   docker build -t ebpf-xds:0.1.0 .
#
# Build on a Linux host whose kernel has BTF (/sys/kernel/btf/vmlinux): the BPF objects are
# compiled in the build stage against a vmlinux.h generated from the build host's BTF. They are
# CO-RE objects, relocated by libbpf against the BTF of the node they load on, so a vmlinux.h from
# any 6.x kernel builds objects that run on every kernel the agent supports (Linux 6.1+).
# Checked in CI by test/unit/deploy-dockerfile.test.ts (structure, sources, .dockerignore).

ARG NODE_MAJOR=20

# --- build: npm dependencies (with native addons), BPF objects --------------------------------
FROM node:${NODE_MAJOR}-bookworm AS build
# clang/llvm compile the BPF C sources, bpftool generates vmlinux.h, libbpf-dev has bpf_helpers.h.
# The image already has python3, make and g++ for the native addons (better-sqlite3, koffi).
RUN apt-get update \
    && apt-get install -y --no-install-recommends clang llvm libbpf-dev bpftool make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Dependencies first: this layer is reused until package.json or the lock file changes.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY bin ./bin
COPY proto ./proto
COPY src ./src
COPY bpf ./bpf
# The BTF that vmlinux.h is generated from: the build host's, unless a file in the context is
# named (docs/deploy.md, "The image").
ARG VMLINUX_BTF=/sys/kernel/btf/vmlinux
RUN make -s -C bpf VMLINUX_BTF="${VMLINUX_BTF}" \
    && npm prune --omit=dev --no-audit --no-fund

# --- runtime --------------------------------------------------------------------------------
FROM node:${NODE_MAJOR}-bookworm-slim AS runtime
# libbpf1: the agent loads and attaches the programs through libbpf (koffi). iproute2: ip/tc for
# inspecting what is attached. tini: PID 1 that forwards signals and reaps children.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libbpf1 iproute2 tini \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/package.json /app/package-lock.json /app/tsconfig.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/bin ./bin
COPY --from=build /app/proto ./proto
COPY --from=build /app/src ./src
# Only the program objects: not the test programs, not vmlinux.h.
COPY --from=build /app/bpf/.output/*.bpf.o ./bpf/.output/
# The store's directory, owned by the runtime user: Docker seeds a new named volume mounted here
# with this owner (Kubernetes uses fsGroup instead).
RUN mkdir -p /var/lib/ebpf-xds && chown node:node /var/lib/ebpf-xds
# Non-root by default (the control plane needs nothing more). The agent runs as root with
# capabilities granted by its deployment: see deploy/base/agent/daemonset.yaml.
USER node
EXPOSE 18000 8080 9901
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/bin/ebpf-xds.mjs"]
CMD ["--help"]
