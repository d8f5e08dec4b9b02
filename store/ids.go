package store

import (
	"crypto/rand"
	"strings"
)

// idAlphabet avoids characters people misread when they type an id into Slack (0/o, 1/l/i).
const idAlphabet = "23456789abcdefghjkmnpqrstuvwxyz"

// NewID returns prefix + "-" + 10 random characters (about 49 bits), short enough to type in `/jit done`.
// Commit refuses to create over an existing id, so a collision is an ErrConflict, never an overwrite.
func NewID(prefix string) string {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("store: crypto/rand failed: " + err.Error())
	}
	var sb strings.Builder
	sb.WriteString(prefix)
	sb.WriteByte('-')
	for _, c := range b {
		sb.WriteByte(idAlphabet[int(c)%len(idAlphabet)])
	}
	return sb.String()
}
