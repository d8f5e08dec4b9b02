# The two commands a newcomer needs: `make run` and `make test`. See README.md.
.PHONY: run test test-kube bench build lint

# With Slack credentials, run the bot (policy from JITBOT_POLICY_FILE); without, the local playground on the
# embedded store with examples/policy.yaml: its page on DEV_LISTEN, its stand-in target system (the webhook
# receiver) on DEV_WEBHOOK_ADDR, e.g. `make run DEV_WEBHOOK_ADDR=127.0.0.1:9199` when 9099 is taken.
# JITBOT_FOREGROUND=1 gives jitbot the terminal, so Ctrl-C stops it cleanly and make exits 0.
DEV_LISTEN ?= 127.0.0.1:8080
DEV_WEBHOOK_ADDR ?= 127.0.0.1:9099
run:
	@echo "building jitbot: the first build compiles the cloud SDKs and takes a few minutes"
	@go build -o bin/jitbot ./cmd/jitbot
	@if [ -n "$$SLACK_BOT_TOKEN" ]; then JITBOT_FOREGROUND=1 exec bin/jitbot serve; \
	else JITBOT_FOREGROUND=1 exec bin/jitbot dev -listen '$(DEV_LISTEN)' -webhook-addr '$(DEV_WEBHOOK_ADDR)'; fi

test:
	scripts/test.sh

# Opt-in: the Kubernetes adapter against a real etcd + kube-apiserver with RBAC, built from Go modules and cached
# under ~/.cache/jitbot-kube (docs/providers/kubernetes.md, "Testing against a real API server").
test-kube:
	scripts/kube-apiserver-test.sh

# Speed and memory targets (results recorded in docs/benchmarks.md).
bench:
	scripts/ensure-redis.sh
	go test -run '^$$' -bench 'SweepNoneDue' -benchtime 2000x -timeout 30m ./internal/bench/
	go test -run '^$$' -bench '^Benchmark(RevocationLag|MassExpiry|ServeRSS100kRedis|SlashCommandAck|APICreate|ReleaseToRevoke)$$' -benchtime 1x -timeout 30m ./internal/bench/
	go test -run '^$$' -bench '^BenchmarkProcess' -benchtime 1x -timeout 30m ./internal/bench/
	go test -run '^$$' -bench . -benchtime 200x ./store/bolt/ ./store/redis/

# The version `jitbot version` prints: the Git tag or commit (the Dockerfile and the release workflow pass
# VERSION the same way).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

build:
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/jitbot ./cmd/jitbot

lint:
	gofmt -l . | (! grep .)
	go vet ./...
	scripts/actionlint.sh
