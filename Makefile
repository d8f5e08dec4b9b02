# The two commands a newcomer needs: `make run` and `make test`. See README.md.
.PHONY: run test test-kube bench build lint

# With Slack credentials, run the bot (policy from JITBOT_POLICY_FILE); without, the local playground on the
# embedded store with examples/policy.yaml.
run:
	@if [ -n "$$SLACK_BOT_TOKEN" ]; then go run ./cmd/jitbot serve; else go run ./cmd/jitbot dev; fi

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
	go test -run '^$$' -bench 'RevocationLag|MassExpiry|ServeRSS|SlashCommandAck' -benchtime 1x -timeout 30m ./internal/bench/
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
