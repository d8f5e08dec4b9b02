// Package awsutil holds what the AWS adapters share: SDK client options, error classification helpers and a
// context-aware sleep.
package awsutil

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Defaults shared by the adapters.
const (
	DefaultRetryMaxAttempts = 3
	DefaultRetryMaxBackoff  = 2 * time.Second
	DefaultConflictRetries  = 4
	DefaultConflictBackoff  = 250 * time.Millisecond
)

// ClientConfig is what both adapters need to build SDK clients.
type ClientConfig struct {
	Region           string
	Endpoint         string
	Credentials      aws.CredentialsProvider
	HTTPClient       aws.HTTPClient
	RetryMaxAttempts int
	RetryMaxBackoff  time.Duration
}

// Retryer builds the SDK's standard retryer with few attempts and no client-side retry quota: jitbot retries
// whole operations itself, so the SDK only smooths over a blip.
func Retryer(maxAttempts int, maxBackoff time.Duration) aws.Retryer {
	if maxAttempts <= 0 {
		maxAttempts = DefaultRetryMaxAttempts
	}
	if maxBackoff <= 0 {
		maxBackoff = DefaultRetryMaxBackoff
	}
	return retry.NewStandard(func(o *retry.StandardOptions) {
		o.MaxAttempts = maxAttempts
		o.MaxBackoff = maxBackoff
		o.RateLimiter = ratelimit.None
	})
}

// AWSConfig returns the aws.Config the clients are built from. With explicit Credentials no shared
// configuration is loaded (nothing is read from the environment or instance metadata); without, the default
// chain of config.LoadDefaultConfig applies (environment, shared config and credentials files, web identity /
// IRSA, ECS and EC2 instance roles).
func AWSConfig(ctx context.Context, c ClientConfig) (aws.Config, error) {
	var cfg aws.Config
	if c.Credentials == nil {
		var opts []func(*config.LoadOptions) error
		if c.Region != "" {
			opts = append(opts, config.WithRegion(c.Region))
		}
		loaded, err := config.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			return aws.Config{}, err
		}
		cfg = loaded
	} else {
		cfg = aws.Config{Region: c.Region, Credentials: c.Credentials}
		if _, cached := c.Credentials.(*aws.CredentialsCache); !cached {
			cfg.Credentials = aws.NewCredentialsCache(c.Credentials)
		}
	}
	if c.HTTPClient != nil {
		cfg.HTTPClient = c.HTTPClient
	}
	if c.Endpoint != "" {
		cfg.BaseEndpoint = aws.String(c.Endpoint)
	}
	attempts, backoff := c.RetryMaxAttempts, c.RetryMaxBackoff
	cfg.Retryer = func() aws.Retryer { return Retryer(attempts, backoff) }
	cfg.RetryMaxAttempts = 0 // the Retryer above already carries the attempt count
	return cfg, nil
}

// Code returns the AWS error code of err ("" when err is not an API error).
func Code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// Status returns the HTTP status of err's response (0 when there was none).
func Status(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		return re.Response.StatusCode
	}
	return 0
}

// ServerSide reports whether err is a 5xx answer.
func ServerSide(err error) bool { return Status(err) >= http.StatusInternalServerError }

// Sleep waits d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// CtxErr returns ctx.Err().
func CtxErr(ctx context.Context) error { return ctx.Err() }

// RetryCode runs fn, retrying while it fails with the AWS error code (a conflict the service tells callers
// to retry), at most retries more times with doubling backoff from delay. It honours ctx between attempts.
func RetryCode(ctx context.Context, code string, retries int, delay time.Duration, fn func() error) error {
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil || Code(err) != code || attempt >= retries {
			return err
		}
		if serr := Sleep(ctx, delay); serr != nil {
			return fmt.Errorf("%w (after %w)", serr, err)
		}
		delay *= 2
	}
}

// ValidateEndpoint checks an endpoint override: an absolute https URL, plain http only when its host is
// localhost, 127.0.0.1 or ::1 (a local emulator), and no credentials in it.
func ValidateEndpoint(e string) error {
	u, err := url.Parse(e)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", e)
	}
	local := u.Hostname() == "localhost" || u.Hostname() == "127.0.0.1" || u.Hostname() == "::1"
	if u.Scheme != "https" && (u.Scheme != "http" || !local) {
		return fmt.Errorf("%q must be an https:// URL (plain http only for localhost)", e)
	}
	if u.User != nil {
		return errors.New("must not contain credentials")
	}
	return nil
}
