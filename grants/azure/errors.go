package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"

	"github.com/jitbot/jitbot/grants"
)

// ARM error codes the adapter acts on (see docs/providers/azure.md for the sources).
const (
	CodeRoleAssignmentExists           = "RoleAssignmentExists"             // 409 (RBAC) / 400 (PIM): an equal assignment exists
	CodePrincipalNotFound              = "PrincipalNotFound"                // 400: principal not (yet) replicated to ARM
	CodeAuthorizationFailed            = "AuthorizationFailed"              // 403: the bot lacks the permission
	CodeRoleAssignmentNotFound         = "RoleAssignmentNotFound"           // 404 on GET/DELETE by name
	CodeRoleAssignmentDoesNotExist     = "RoleAssignmentDoesNotExist"       // 400 (PIM AdminRemove): nothing to remove
	CodeActiveDurationTooShort         = "ActiveDurationTooShort"           // 400 (PIM removal within ~5 minutes of activation)
	CodeRoleAssignmentUpdateNotAllowed = "RoleAssignmentUpdateNotPermitted" // 400: the name is taken by another principal/role/scope
	CodePolicyValidationFailed         = "RoleAssignmentRequestPolicyValidationFailed"
)

// APIError is an error answer from Azure Resource Manager, reduced to what is safe to log: the operation, the
// HTTP status, ARM's error code and message (truncated) and the Retry-After delay. It never carries request
// headers, so no token can leak through it. Returned wrapped (use errors.As); permanent answers are also wrapped
// with grants.Permanent.
type APIError struct {
	Op         string        // e.g. "PUT roleAssignments"
	Resource   string        // the ARM resource path concerned (no host, no query)
	StatusCode int           // HTTP status
	Code       string        // ARM error.code, e.g. "AuthorizationFailed"
	Message    string        // ARM error.message, truncated to 300 bytes
	RetryAfter time.Duration // from Retry-After (or x-ms-ratelimit-... headers are ignored); 0 if absent
	RequestID  string        // x-ms-request-id / x-ms-correlation-request-id, for support cases
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "azure %s %s: %d", e.Op, e.Resource, e.StatusCode)
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	if e.RequestID != "" {
		b.WriteString(" [request " + e.RequestID + "]")
	}
	return b.String()
}

// RetryAfterOf returns the Retry-After delay carried by err (an *APIError with a 429 or 503 answer), 0 if none.
func RetryAfterOf(err error) time.Duration {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	return 0
}

// CodeOf returns the ARM error code carried by err, "" if none.
func CodeOf(err error) string {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return ""
}

// StatusOf returns the HTTP status carried by err, 0 if none.
func StatusOf(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.StatusCode
	}
	return 0
}

// toAPIError converts an SDK error. The boolean is false for errors that are not HTTP answers (transport,
// context, credential), which are returned as a sanitized error.
func toAPIError(ctx context.Context, op, resource string, err error) (*APIError, error) {
	if err == nil {
		return nil, nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, fmt.Errorf("azure %s %s: %w", op, resource, ctxErr)
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("azure %s %s: %w", op, resource, err)
		}
		// Transport or credential failure: retryable. The SDK's messages name URLs and credential types, never
		// token values, but keep only the first line to stay short.
		msg := err.Error()
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		return nil, fmt.Errorf("azure %s %s: %s", op, resource, truncate(msg, 300))
	}
	ae := &APIError{Op: op, Resource: resource, StatusCode: re.StatusCode, Code: re.ErrorCode}
	if resp := re.RawResponse; resp != nil {
		if body, perr := runtime.Payload(resp); perr == nil && len(body) > 0 {
			var eb struct {
				Error struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if json.Unmarshal(body, &eb) == nil {
				if eb.Error.Code != "" {
					ae.Code = eb.Error.Code
				}
				ae.Message = truncate(eb.Error.Message, 300)
			}
		}
		ae.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
		ae.RequestID = resp.Header.Get("x-ms-request-id")
		if ae.RequestID == "" {
			ae.RequestID = resp.Header.Get("x-ms-correlation-request-id")
		}
	}
	return ae, nil
}

// classify decides retryable vs permanent for an answer not handled by the caller. grant is true for operations
// that create access (where "not found" means the scope, role or principal is missing).
func classify(ae *APIError) error {
	switch {
	case ae.StatusCode == http.StatusTooManyRequests, ae.StatusCode >= 500, ae.StatusCode == http.StatusRequestTimeout:
		return ae
	case ae.StatusCode == http.StatusConflict:
		// Concurrent modification or an operation in progress on the scope: retrying helps.
		return ae
	case ae.StatusCode == http.StatusUnauthorized:
		// An expired or revoked token; the credential fetches a new one on the next call.
		return ae
	case ae.Code == CodePrincipalNotFound:
		// New principals take a while to replicate to ARM (docs: "this error might be related to a replication
		// delay"). Retrying heals it; a principal that never appears keeps failing and ends up revoke_failed /
		// refused by the caller's retry budget.
		return ae
	case ae.Code == CodeActiveDurationTooShort:
		// PIM refuses removal shortly after activation; it succeeds later.
		return ae
	case ae.StatusCode == http.StatusForbidden, ae.StatusCode == http.StatusNotFound, ae.StatusCode == http.StatusBadRequest,
		ae.StatusCode == http.StatusUnprocessableEntity:
		return grants.Permanent(ae)
	case ae.StatusCode >= 400 && ae.StatusCode < 500:
		return grants.Permanent(ae)
	}
	return ae
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// retryAfter parses a Retry-After header (seconds or HTTP date).
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
