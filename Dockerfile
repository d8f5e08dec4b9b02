# syntax=docker/dockerfile:1
# Build: docker build -t jitbot .      Run: see README.md ("Running in production") and charts/jitbot.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/jitbot ./cmd/jitbot

# distroless/static has CA certificates and a nonroot user, and no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/jitbot /usr/local/bin/jitbot
# distroless nonroot is uid/gid 65532; numeric, so the kubelet can verify runAsNonRoot.
USER 65532:65532
ENV JITBOT_LISTEN_ADDR=:8080 JITBOT_DATA_DIR=/var/lib/jitbot JITBOT_POLICY_FILE=/etc/jitbot/policy.yaml
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/jitbot"]
CMD ["serve"]
