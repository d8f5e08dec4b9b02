package store

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// GenesisHash is the PrevHash of the first audit record.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// ChainHash is the audit log's link function: hex(sha256(prevHash + "\n" + seq + "\n" + ContentDigest(raw))),
// where seq is decimal and raw is the exact stored JSON of the event. Every store computes it the same way
// (the Redis store inside its commit script, from a digest the client sends), and VerifyChain recomputes it
// from the stored bytes.
func ChainHash(prevHash string, seq uint64, raw []byte) string {
	return linkSum(sha256.New(), prevHash, seq, raw)
}

func linkSum(h hash.Hash, prevHash string, seq uint64, raw []byte) string {
	h.Write([]byte(prevHash))
	h.Write([]byte{'\n'})
	h.Write([]byte(strconv.FormatUint(seq, 10)))
	h.Write([]byte{'\n'})
	h.Write([]byte(ContentDigest(raw)))
	return hex.EncodeToString(h.Sum(nil))
}

// KeyedPrefix starts the hash of a keyed link.
const KeyedPrefix = "k1:"

// KeyedChainHash is a keyed link: KeyedPrefix + hex(HMAC-SHA256(key, the ChainHash message)). Without the key
// (JITBOT_AUDIT_LINK_KEY, kept outside the store) nobody can compute it, so a store writer cannot rewrite a
// keyed entry, or any entry before it, and re-link the chain.
func KeyedChainHash(key []byte, prevHash string, seq uint64, raw []byte) string {
	return KeyedPrefix + linkSum(hmac.New(sha256.New, key), prevHash, seq, raw)
}

// LinkHash is the link a store appends: keyed when key is set, else ChainHash.
func LinkHash(key []byte, prevHash string, seq uint64, raw []byte) string {
	if len(key) == 0 {
		return ChainHash(prevHash, seq, raw)
	}
	return KeyedChainHash(key, prevHash, seq, raw)
}

// IsKeyed reports whether a stored link hash is keyed.
func IsKeyed(hash string) bool { return strings.HasPrefix(hash, KeyedPrefix) }

// ContentDigest is hex(sha256(raw)), the part of a chain link that depends on the entry's content.
func ContentDigest(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// EncodeEvent is the canonical JSON of an event as it is stored and hashed.
func EncodeEvent(e AuditEvent) ([]byte, error) {
	raw, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("store: encode audit event: %w", err)
	}
	return raw, nil
}

// AuditHead is the position of the audit log's last entry: its seq and hash.
type AuditHead struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// ChainError says where the audit chain breaks.
type ChainError struct {
	Seq    uint64
	Reason string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("audit chain broken at seq %d: %s", e.Seq, e.Reason)
}

// VerifyChain checks that records form an unbroken chain that continues from (afterSeq, prevHash): sequence
// numbers without gaps, each PrevHash equal to the previous Hash, each Hash recomputed from the stored bytes,
// and each stored Event equal to its bytes. It returns the last seq and hash, so a long log can be verified
// page by page. Keyed links cannot be recomputed without the key: VerifyChain checks only that they link
// (see ChainVerifier for the key).
func VerifyChain(records []AuditRecord, afterSeq uint64, prevHash string) (lastSeq uint64, lastHash string, err error) {
	v := ChainVerifier{Seq: afterSeq, Hash: prevHash}
	err = v.Verify(records)
	return v.Seq, v.Hash, err
}

// ChainVerifier verifies a log page by page, keyed links included. Set Seq and Hash to where the pages
// continue from (0 and GenesisHash for the whole log) and Key to check keyed links.
type ChainVerifier struct {
	Seq  uint64
	Hash string
	Key  []byte
	// Keyed and Unkeyed count the entries checked of each kind; KeyedUnchecked counts keyed entries whose
	// hash could not be recomputed (no Key), only their linkage was checked.
	Keyed, Unkeyed, KeyedUnchecked uint64

	mac hash.Hash // HMAC with Key, reused across entries
}

// Verify checks the next page (see VerifyChain). An unkeyed entry after a keyed one is a break (a downgrade:
// someone re-linked the tail without the key, or a replica runs without JITBOT_AUDIT_LINK_KEY).
func (v *ChainVerifier) Verify(records []AuditRecord) error {
	for _, r := range records {
		if r.Seq != v.Seq+1 {
			return &ChainError{Seq: v.Seq + 1, Reason: fmt.Sprintf("entry missing (next stored entry is seq %d)", r.Seq)}
		}
		if r.PrevHash != v.Hash {
			return &ChainError{Seq: r.Seq, Reason: "prev_hash does not match the previous entry's hash"}
		}
		switch {
		case IsKeyed(r.Hash) && len(v.Key) > 0:
			if v.mac == nil {
				v.mac = hmac.New(sha256.New, v.Key)
			}
			v.mac.Reset()
			if want := KeyedPrefix + linkSum(v.mac, r.PrevHash, r.Seq, r.Raw); !hmac.Equal([]byte(want), []byte(r.Hash)) {
				return &ChainError{Seq: r.Seq, Reason: "content does not match its keyed hash (entry edited or re-linked, or JITBOT_AUDIT_LINK_KEY is not the key it was written with)"}
			}
			v.Keyed++
		case IsKeyed(r.Hash):
			v.Keyed++
			v.KeyedUnchecked++
		default:
			if v.Keyed > 0 {
				return &ChainError{Seq: r.Seq, Reason: "an unkeyed entry follows keyed ones (the tail was re-linked by someone without the link key)"}
			}
			if want := ChainHash(r.PrevHash, r.Seq, r.Raw); want != r.Hash {
				return &ChainError{Seq: r.Seq, Reason: "content does not match its hash (entry edited)"}
			}
			v.Unkeyed++
		}
		var decoded AuditEvent
		if err := json.Unmarshal(r.Raw, &decoded); err != nil {
			return &ChainError{Seq: r.Seq, Reason: "stored entry is not valid JSON"}
		}
		v.Seq, v.Hash = r.Seq, r.Hash
	}
	return nil
}
