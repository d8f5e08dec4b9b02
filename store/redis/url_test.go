package redis_test

import (
	"context"
	"strings"
	"testing"
	"time"

	jitredis "github.com/jitbot/jitbot/store/redis"
)

func TestParseURL(t *testing.T) {
	type want struct {
		addrs            []string
		user, pass       string
		db               int
		master           string
		cluster, tls     bool
		sentUser, sentPw string
		dial             time.Duration
		pool             int
	}
	cases := []struct {
		url  string
		want want
	}{
		{"redis://localhost", want{addrs: []string{"localhost:6379"}}},
		{"redis://127.0.0.1:6380/3", want{addrs: []string{"127.0.0.1:6380"}, db: 3}},
		{"redis://:s3cr%40t@h:1/0", want{addrs: []string{"h:1"}, pass: "s3cr@t"}},
		{"redis://alice:pw@h/2?dial_timeout=2s&pool_size=7", want{addrs: []string{"h:6379"}, user: "alice", pass: "pw", db: 2, dial: 2 * time.Second, pool: 7}},
		{"rediss://h:6390", want{addrs: []string{"h:6390"}, tls: true}},
		{"redis://[::1]:7000", want{addrs: []string{"[::1]:7000"}}},
		{"redis://[::1]", want{addrs: []string{"[::1]:6379"}}},
		{"redis+sentinel://s1:26379,s2:26380/mymaster", want{addrs: []string{"s1:26379", "s2:26380"}, master: "mymaster"}},
		{"redis+sentinel://:pw@s1,s2/mymaster/4", want{addrs: []string{"s1:26379", "s2:26379"}, master: "mymaster", pass: "pw", db: 4}},
		{"redis+sentinel://s1/m?sentinel_password=sp&sentinel_username=su", want{addrs: []string{"s1:26379"}, master: "m", sentUser: "su", sentPw: "sp"}},
		{"rediss+sentinel://s1/m", want{addrs: []string{"s1:26379"}, master: "m", tls: true}},
		{"redis+cluster://h1:7000,h2:7001", want{addrs: []string{"h1:7000", "h2:7001"}, cluster: true}},
		{"redis+cluster://u:p@h1:7000", want{addrs: []string{"h1:7000"}, cluster: true, user: "u", pass: "p"}},
		{"rediss+cluster://h1:7000,h2:7001/", want{addrs: []string{"h1:7000", "h2:7001"}, cluster: true, tls: true}},
	}
	for _, c := range cases {
		o, err := jitredis.ParseURL(c.url)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", c.url, err)
			continue
		}
		got := want{addrs: o.Addrs, user: o.Username, pass: o.Password, db: o.DB, master: o.MasterName,
			cluster: o.IsClusterMode, tls: o.TLSConfig != nil, sentUser: o.SentinelUsername, sentPw: o.SentinelPassword,
			dial: o.DialTimeout, pool: o.PoolSize}
		if strings.Join(got.addrs, ",") != strings.Join(c.want.addrs, ",") || got.user != c.want.user ||
			got.pass != c.want.pass || got.db != c.want.db || got.master != c.want.master ||
			got.cluster != c.want.cluster || got.tls != c.want.tls || got.sentUser != c.want.sentUser ||
			got.sentPw != c.want.sentPw || got.dial != c.want.dial || got.pool != c.want.pool {
			t.Errorf("ParseURL(%q) = %+v, want %+v", c.url, got, c.want)
		}
	}
}

func TestParseURLErrorsHidePassword(t *testing.T) {
	const secret = "hunter2SECRET"
	bad := []string{
		"http://:" + secret + "@h",
		"localhost:" + secret,
		"redis://:" + secret + "@h:notaport",
		"redis://:" + secret + "@h/notadb",
		"redis://:" + secret + "@h1,h2",
		"redis://:" + secret + "@h/1/2",
		"redis+sentinel://:" + secret + "@s1",
		"redis+sentinel://:" + secret + "@s1/m/x",
		"redis+cluster://:" + secret + "@h1:7000/1",
		"redis://:" + secret + "@h?bogus=" + secret,
		"redis://:" + secret + "@h?sentinel_password=" + secret,
		"redis://:" + secret + "@h?dial_timeout=" + secret,
		"redis://:" + secret + "@/0",
		"redis://:%zz" + secret + "@h",
	}
	for _, u := range bad {
		_, err := jitredis.ParseURL(u)
		if err == nil {
			t.Errorf("ParseURL(%q) succeeded, want an error", u)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("ParseURL error leaks the password: %v", err)
		}
		if !strings.HasPrefix(err.Error(), "redis: ") {
			t.Errorf("ParseURL error %q lacks the redis: prefix", err)
		}
	}
}

func TestOpenErrorHidesPassword(t *testing.T) {
	const secret = "hunter2SECRET"
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	// A port nothing listens on: the connection fails, and the error must not carry the password.
	_, err := jitredis.Open(ctx, "redis://:"+secret+"@127.0.0.1:1/0?dial_timeout=200ms&max_retries=0", jitredis.Options{})
	if err == nil {
		t.Fatal("Open of an unreachable Redis succeeded")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("Open error leaks the password: %v", err)
	}
}

func TestPrefixValidation(t *testing.T) {
	for _, p := range []string{"{jit}", "app:{jit}", "{a}b", "{jit-test-1}"} {
		if err := jitredis.ValidatePrefix(p); err != nil {
			t.Errorf("ValidatePrefix(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range []string{"", "jit", "{}", "{jit", "jit}", "}{"} {
		if err := jitredis.ValidatePrefix(p); err == nil {
			t.Errorf("ValidatePrefix(%q) = nil, want an error", p)
		}
	}
	if _, err := jitredis.Open(t.Context(), "redis://127.0.0.1:1", jitredis.Options{Prefix: "nohashtag"}); err == nil {
		t.Error("Open with a prefix lacking a hash tag succeeded")
	}
	defer func() {
		if recover() == nil {
			t.Error("New with a prefix lacking a hash tag did not panic")
		}
	}()
	jitredis.New(nil, jitredis.Options{Prefix: "nohashtag"})
}

func TestRedactURLRemovesEveryCredential(t *testing.T) {
	cases := map[string]string{
		"redis://:hunter2@127.0.0.1:6379/0":                     "redis://REDACTED@127.0.0.1:6379/0",
		"rediss://jitbot:hunter2@redis.example.com/1":           "rediss://REDACTED@redis.example.com/1",
		"redis://jitbot@redis.example.com":                      "redis://REDACTED@redis.example.com",
		"redis://a%40b:p%40ss%3Aw@h:1/0#frag-hunter2":           "redis://REDACTED@h:1/0",
		"redis+cluster://u:hunter2@n1:7000,n2:7001?pool_size=5": "redis+cluster://REDACTED@n1:7000,n2:7001?pool_size=5",
		"redis+sentinel://u:hunter2@s1,s2:26380/mymaster/2?sentinel_username=su&sentinel_password=hunter3&dial_timeout=2s": "redis+sentinel://REDACTED@s1,s2:26380/mymaster/2?sentinel_username=REDACTED&sentinel_password=REDACTED&dial_timeout=2s",
		"rediss+sentinel://s1/m?sentinel%5Fpassword=hunter3":                                                               "rediss+sentinel://s1/m?sentinel%5Fpassword=REDACTED",
		"redis://h/0?token=hunter2&password=hunter3":                                                                       "redis://h/0?token=REDACTED&password=REDACTED",
		"redis://h/0?%zz=hunter2": "redis://h/0?REDACTED=REDACTED",
		"no scheme hunter2":       "REDACTED",
	}
	for in, want := range cases {
		got := jitredis.RedactURL(in)
		if got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(got, "hunter") {
			t.Errorf("RedactURL(%q) = %q still holds a secret", in, got)
		}
	}
}
