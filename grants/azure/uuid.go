package azure

import (
	"crypto/sha1"
	"fmt"
	"regexp"
	"strings"
)

// nsURL is the RFC 4122 name space for URLs.
var nsURL = [16]byte{0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}

// Namespace is the UUIDv5 name space of jitbot's Azure object names: UUIDv5(URL, "https://github.com/jitbot/jitbot/grants/azure").
// Role assignment names are UUIDv5(Namespace, binding key), so a retried grant and an overlapping lease reuse it.
var Namespace = uuidV5Bytes(nsURL, "https://github.com/jitbot/jitbot/grants/azure")

func uuidV5Bytes(ns [16]byte, name string) [16]byte {
	h := sha1.New()
	h.Write(ns[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = (u[6] & 0x0f) | 0x50 // version 5
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 4122 variant
	return u
}

func formatUUID(u [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// uuidV5 returns the UUIDv5 of name in name space ns, in canonical lower-case form.
func uuidV5(ns [16]byte, name string) string { return formatUUID(uuidV5Bytes(ns, name)) }

// AssignmentName is the role assignment name (RBAC mode) for a binding: UUIDv5(Namespace, key), where key is the
// assignment's BindingKey (its GrantID when it has none).
func AssignmentName(key string) string { return uuidV5(Namespace, key) }

// RequestName is the name of the k-th PIM schedule request of kind for key: UUIDv5(Namespace, key+"/"+kind) for
// k = 0, and with "/k" appended after that. The adapter's key is "<binding key>/<grant id>" and its kinds are
// "assign", "remove", and "extend@<end>" / "update@<end>" (RFC 3339), so every lease of a binding and every
// new end has names of its own. A request name cannot be reused once Azure has processed it, so a grant that
// must be applied again (drift) moves on to the next k.
func RequestName(key, kind string, k int) string {
	name := key + "/" + kind
	if k > 0 {
		name += fmt.Sprintf("/%d", k)
	}
	return uuidV5(Namespace, name)
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// IsGUID reports whether s is a GUID in the 8-4-4-4-12 form (no braces).
func IsGUID(s string) bool { return guidRE.MatchString(s) }

func lowerGUID(s string) string { return strings.ToLower(s) }
