package redis

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ParseURL turns a Redis URL (see the package documentation for the accepted forms) into options for
// goredis.NewUniversalClient. Errors never quote the URL, so a password in it is never echoed.
func ParseURL(rawURL string) (*goredis.UniversalOptions, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, errors.New("redis: parse url: missing scheme (want redis://, rediss://, redis+sentinel:// or redis+cluster://)")
	}
	var mode string
	var useTLS bool
	switch strings.ToLower(scheme) {
	case "redis":
		mode = "single"
	case "rediss":
		mode, useTLS = "single", true
	case "redis+sentinel":
		mode = "sentinel"
	case "rediss+sentinel":
		mode, useTLS = "sentinel", true
	case "redis+cluster":
		mode = "cluster"
	case "rediss+cluster":
		mode, useTLS = "cluster", true
	default:
		return nil, fmt.Errorf("redis: parse url: unsupported scheme %q (want redis, rediss, redis+sentinel, rediss+sentinel, redis+cluster or rediss+cluster)", scheme)
	}
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		rest = rest[:i]
	}
	rest, rawQuery, _ := strings.Cut(rest, "?")
	authority, path, _ := strings.Cut(rest, "/")

	o := &goredis.UniversalOptions{}
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		userinfo := authority[:i]
		authority = authority[i+1:]
		user, pass, hasPass := strings.Cut(userinfo, ":")
		var err error
		if o.Username, err = url.PathUnescape(user); err != nil {
			return nil, errors.New("redis: parse url: invalid escape in user name")
		}
		if hasPass {
			if o.Password, err = url.PathUnescape(pass); err != nil {
				return nil, errors.New("redis: parse url: invalid escape in password")
			}
		}
	}

	defaultPort := "6379"
	if mode == "sentinel" {
		defaultPort = "26379"
	}
	for _, h := range strings.Split(authority, ",") {
		addr, err := parseAddr(h, defaultPort)
		if err != nil {
			return nil, err
		}
		o.Addrs = append(o.Addrs, addr)
	}
	if mode == "single" && len(o.Addrs) != 1 {
		return nil, errors.New("redis: parse url: redis:// takes exactly one host (use redis+cluster:// or redis+sentinel:// for several)")
	}

	var segs []string
	if path = strings.Trim(path, "/"); path != "" {
		segs = strings.Split(path, "/")
	}
	switch mode {
	case "single":
		if len(segs) > 1 {
			return nil, errors.New("redis: parse url: path must be at most /<db>")
		}
		if len(segs) == 1 {
			db, err := parseDB(segs[0])
			if err != nil {
				return nil, err
			}
			o.DB = db
		}
	case "sentinel":
		if len(segs) < 1 || len(segs) > 2 {
			return nil, errors.New("redis: parse url: sentinel url needs /<master name>[/<db>]")
		}
		name, err := url.PathUnescape(segs[0])
		if err != nil || name == "" {
			return nil, errors.New("redis: parse url: invalid sentinel master name")
		}
		o.MasterName = name
		if len(segs) == 2 {
			db, err := parseDB(segs[1])
			if err != nil {
				return nil, err
			}
			o.DB = db
		}
	case "cluster":
		if len(segs) > 0 {
			return nil, errors.New("redis: parse url: cluster url takes no path (Redis Cluster has only db 0)")
		}
		o.IsClusterMode = true
	}

	if useTLS {
		// ServerName stays empty: crypto/tls takes it from each dialled address, which is right for every
		// node of a cluster or sentinel deployment.
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if err := applyQuery(o, mode, rawQuery); err != nil {
		return nil, err
	}
	return o, nil
}

func parseAddr(h, defaultPort string) (string, error) {
	if h == "" {
		return "", errors.New("redis: parse url: empty host")
	}
	var host, port string
	switch {
	case strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]"):
		host, port = h[1:len(h)-1], defaultPort
	case strings.HasPrefix(h, "[") || strings.Contains(h, ":"):
		var err error
		if host, port, err = net.SplitHostPort(h); err != nil {
			return "", errors.New("redis: parse url: invalid host:port")
		}
	default:
		host, port = h, defaultPort
	}
	if host == "" {
		return "", errors.New("redis: parse url: empty host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", errors.New("redis: parse url: invalid port")
	}
	return net.JoinHostPort(host, port), nil
}

func parseDB(s string) (int, error) {
	db, err := strconv.Atoi(s)
	if err != nil || db < 0 {
		return 0, errors.New("redis: parse url: database must be a non-negative integer")
	}
	return db, nil
}

// applyQuery applies the supported query parameters. Unknown parameters are refused so a typo is not
// silently ignored; values of secret parameters are never quoted.
func applyQuery(o *goredis.UniversalOptions, mode, rawQuery string) error {
	if rawQuery == "" {
		return nil
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return errors.New("redis: parse url: invalid query string")
	}
	for key, vals := range q {
		if len(vals) != 1 {
			return fmt.Errorf("redis: parse url: parameter %q given more than once", key)
		}
		v := vals[0]
		dur := func(dst *time.Duration) error {
			d, err := time.ParseDuration(v)
			if err != nil {
				// Plain numbers are seconds, as in go-redis.
				n, nerr := strconv.ParseFloat(v, 64)
				if nerr != nil {
					return fmt.Errorf("redis: parse url: parameter %q: invalid duration", key)
				}
				d = time.Duration(n * float64(time.Second))
			}
			*dst = d
			return nil
		}
		integer := func(dst *int) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("redis: parse url: parameter %q: invalid integer", key)
			}
			*dst = n
			return nil
		}
		var err error
		switch key {
		case "client_name":
			o.ClientName = v
		case "protocol":
			err = integer(&o.Protocol)
		case "dial_timeout":
			err = dur(&o.DialTimeout)
		case "read_timeout":
			err = dur(&o.ReadTimeout)
		case "write_timeout":
			err = dur(&o.WriteTimeout)
		case "pool_size":
			err = integer(&o.PoolSize)
		case "min_idle_conns":
			err = integer(&o.MinIdleConns)
		case "max_retries":
			err = integer(&o.MaxRetries)
		case "sentinel_username", "sentinel_password":
			if mode != "sentinel" {
				return fmt.Errorf("redis: parse url: parameter %q only applies to redis+sentinel urls", key)
			}
			if key == "sentinel_username" {
				o.SentinelUsername = v
			} else {
				o.SentinelPassword = v
			}
		default:
			return fmt.Errorf("redis: parse url: unknown parameter %q", key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// nonSecretParams are the query parameters whose values RedactURL may show; every other value is replaced.
var nonSecretParams = map[string]bool{
	"client_name": true, "protocol": true, "dial_timeout": true, "read_timeout": true, "write_timeout": true,
	"pool_size": true, "min_idle_conns": true, "max_retries": true,
}

// RedactURL returns rawURL safe to log: the userinfo (user name and password) is replaced by "REDACTED",
// the value of every query parameter not known to be harmless (sentinel_password, and anything unknown) by
// "REDACTED", and a fragment is dropped. It never fails: text it cannot take apart is replaced whole.
func RedactURL(rawURL string) string {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return "REDACTED"
	}
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		rest = rest[:i]
	}
	rest, rawQuery, hasQuery := strings.Cut(rest, "?")
	authority, path, hasPath := strings.Cut(rest, "/")
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = "REDACTED@" + authority[i+1:]
	}
	out := scheme + "://" + authority
	if hasPath {
		out += "/" + path
	}
	if hasQuery {
		var parts []string
		for _, kv := range strings.Split(rawQuery, "&") {
			k, _, _ := strings.Cut(kv, "=")
			name, err := url.QueryUnescape(k)
			if err != nil || !nonSecretParams[name] {
				if err != nil || strings.ContainsAny(name, "=&") {
					k = "REDACTED"
				}
				parts = append(parts, k+"=REDACTED")
				continue
			}
			parts = append(parts, kv)
		}
		out += "?" + strings.Join(parts, "&")
	}
	return out
}
