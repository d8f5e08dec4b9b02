// Package redistest gives tests a Redis to run against: JITBOT_TEST_REDIS_URL when set, else a Redis on
// 127.0.0.1:6379 when one answers, else a private redis-server started for the test binary. It never skips:
// CI must really run Redis, so a missing redis-server fails the test.
package redistest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	jitredis "github.com/jitbot/jitbot/store/redis"
)

// EnvURL names the environment variable that points tests at a Redis (any URL jitbot's store/redis accepts).
const EnvURL = "JITBOT_TEST_REDIS_URL"

const defaultAddr = "127.0.0.1:6379"

var (
	once   sync.Once
	url    string
	urlErr error
	// keep holds the write end of the watchdog pipe of a redis-server this binary started: when the test
	// binary exits, the pipe closes and the watchdog shell kills redis-server.
	keep io.WriteCloser
)

// URL returns the URL of a Redis for tests (see the package documentation). The Redis is shared by the whole
// test binary; isolate tests with Prefix.
func URL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	once.Do(func() { url, urlErr = findOrStart() })
	if urlErr != nil {
		t.Fatalf("redistest: %v", urlErr)
	}
	return url
}

func findOrStart() (string, error) {
	if ping(defaultAddr, 500*time.Millisecond) == nil {
		return "redis://" + defaultAddr + "/0", nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if _, serr := os.Stat("/usr/bin/redis-server"); serr != nil {
			return "", fmt.Errorf("no Redis answers at %s and no redis-server binary was found in PATH or /usr/bin: "+
				"install redis-server (apt-get install redis-server) or set %s", defaultAddr, EnvURL)
		}
		bin = "/usr/bin/redis-server"
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		u, err := start(bin)
		if err == nil {
			return u, nil
		}
		lastErr = err
	}
	return "", lastErr
}

func start(bin string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "jitbot-redistest-")
	if err != nil {
		return "", err
	}
	// The shell runs redis-server and waits for its stdin (a pipe from this process) to close, which happens
	// when this process exits however it exits; then it kills redis-server.
	const watchdog = `"$0" --port "$1" --bind 127.0.0.1 --save '' --appendonly no --dir "$2" --logfile "$2/redis.log" & pid=$!
cat >/dev/null
kill "$pid" 2>/dev/null
wait "$pid"
rm -rf "$2"`
	cmd := exec.Command("sh", "-c", watchdog, bin, strconv.Itoa(port), dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start %s: %w", bin, err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err = ping(addr, 200*time.Millisecond); err == nil {
			keep = stdin
			go func() { _ = cmd.Wait() }()
			return "redis://" + addr + "/0", nil
		}
		if time.Now().After(deadline) {
			_ = stdin.Close()
			_ = cmd.Wait()
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			return "", fmt.Errorf("started %s on port %d but it does not answer: %v\n%s", bin, port, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ping speaks just enough RESP to see whether a Redis answers at addr without auth (a raw exchange, so a
// probe of an empty port logs nothing).
func ping(addr string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * timeout))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("%s answered PING with %q", addr, strings.TrimSpace(line))
	}
	return nil
}

// Client returns a raw client for the Redis at URL(t), closed when the test ends.
func Client(t testing.TB) goredis.UniversalClient {
	t.Helper()
	o, err := jitredis.ParseURL(URL(t))
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	c := goredis.NewUniversalClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Prefix returns a key prefix unique to this test, such as "{jit-test-0123abcd4567ef89}" (one hash tag, so
// it is a valid store/redis prefix), and deletes every key under it when the test ends.
func Prefix(t testing.TB) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	prefix := "{jit-test-" + hex.EncodeToString(b[:]) + "}"
	u := URL(t)
	t.Cleanup(func() {
		if err := deletePrefix(u, prefix); err != nil {
			t.Errorf("redistest: delete keys under %s: %v", prefix, err)
		}
	})
	return prefix
}

func deletePrefix(u, prefix string) error {
	o, err := jitredis.ParseURL(u)
	if err != nil {
		return err
	}
	c := goredis.NewUniversalClient(o)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	del := func(ctx context.Context, node goredis.UniversalClient) error {
		iter := node.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		batch := make([]string, 0, 500)
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			err := node.Unlink(ctx, batch...).Err()
			batch = batch[:0]
			return err
		}
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == cap(batch) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		return flush()
	}
	if cc, ok := c.(*goredis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, node *goredis.Client) error { return del(ctx, node) })
	}
	return del(ctx, c)
}

// StartServer starts a private redis-server for this test with the given extra arguments (for example
// "--appendonly", "yes" or "--maxmemory-policy", "allkeys-lru"; without arguments it persists nothing), and
// returns its URL and its address. It is stopped when the test ends. Use it for tests that need a Redis
// configured in a particular way; everything else shares URL.
func StartServer(t testing.TB, args ...string) (url, addr string) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		bin = "/usr/bin/redis-server"
	}
	port, err := freePort()
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	dir := t.TempDir()
	full := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log")}, args...)
	cmd := exec.Command(bin, full...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("redistest: start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		// A server that demands AUTH answers PING with NOAUTH: it is up.
		err := ping(addr, 200*time.Millisecond)
		if err == nil || strings.Contains(err.Error(), "NOAUTH") {
			return "redis://" + addr + "/0", addr
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redistest: redis-server %v exited at start:\n%s", args, log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redistest: redis-server on port %d does not answer: %v\n%s", port, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ClientFor returns a raw client for the Redis at url (any form store/redis accepts), closed when the test
// ends.
func ClientFor(t testing.TB, url string) goredis.UniversalClient {
	t.Helper()
	o, err := jitredis.ParseURL(url)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	c := goredis.NewUniversalClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Sent returns a go-redis hook that calls fn with every command before it is sent: a command sent alone as
// one, a pipeline's (or transaction's) commands together, so that len(cmds) tells one round trip's size.
// Tests use it to count round trips and to look at the commands and keys a store sends.
func Sent(fn func(cmds []goredis.Cmder)) goredis.Hook { return sentHook(fn) }

type sentHook func(cmds []goredis.Cmder)

func (h sentHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h sentHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h([]goredis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (h sentHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h(cmds)
		return next(ctx, cmds)
	}
}

// IsLockRelease reports whether cmd is the store's lock-release script (EVALSHA with one key, a lock key, and
// the holder's value; a renew has the ttl too): the release ReleaseLock sends without waiting for the answer.
func IsLockRelease(cmd goredis.Cmder) bool {
	a := cmd.Args()
	return cmd.Name() == "evalsha" && len(a) == 5 && fmt.Sprint(a[2]) == "1" && strings.Contains(fmt.Sprint(a[3]), ":lock:")
}

// AllLockReleases reports whether cmds, one round trip, are all lock releases (see IsLockRelease): the store
// sends the releases asked for meanwhile together.
func AllLockReleases(cmds []goredis.Cmder) bool {
	for _, c := range cmds {
		if !IsLockRelease(c) {
			return false
		}
	}
	return len(cmds) > 0
}
