package bolt

import (
	"encoding/binary"
	"time"
)

// Index keys are built so that bbolt's byte order is the order the queries need.
//
//	timeKey(t)  = 8-byte big-endian (unix seconds with the sign bit flipped) + 4-byte big-endian nanoseconds.
//	              Order-preserving for every time.Time (also before 1970) and exact to the nanosecond, so
//	              "DueAt <= now" is decided on the full stored precision.
//	strKey(s)   = 4-byte big-endian length + s. A length prefix (rather than a separator byte) keeps a value
//	              such as a binding key from ever being a prefix of another one.
const timeKeyLen = 12

func timeKey(t time.Time) []byte {
	var b [timeKeyLen]byte
	binary.BigEndian.PutUint64(b[:8], uint64(t.Unix())^(1<<63))
	binary.BigEndian.PutUint32(b[8:], uint32(t.Nanosecond()))
	return b[:]
}

func decodeTimeKey(b []byte) time.Time {
	sec := int64(binary.BigEndian.Uint64(b[:8]) ^ (1 << 63))
	nsec := int64(binary.BigEndian.Uint32(b[8:timeKeyLen]))
	return time.Unix(sec, nsec).UTC()
}

func strKey(s string) []byte {
	b := make([]byte, 4, 4+len(s))
	binary.BigEndian.PutUint32(b, uint32(len(s)))
	return append(b, s...)
}

// cat concatenates key parts into a fresh slice.
func cat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// timeIDKey is timeKey(t) + id: used by the due and pending indexes (earliest first).
func timeIDKey(t time.Time, id string) []byte { return cat(timeKey(t), []byte(id)) }

// ownerKey is strKey(owner) + timeKey(created) + id: used by the by-requester, by-user, by-binding and
// by-state indexes; iterated backwards for newest first.
func ownerKey(owner string, created time.Time, id string) []byte {
	return cat(strKey(owner), timeKey(created), []byte(id))
}

func seqKey(seq uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	return b[:]
}

// prefixSuccessor returns the smallest key greater than every key with the given prefix, or nil if there is
// none (the prefix is all 0xff).
func prefixSuccessor(prefix []byte) []byte {
	succ := append([]byte(nil), prefix...)
	for i := len(succ) - 1; i >= 0; i-- {
		if succ[i] < 0xff {
			succ[i]++
			return succ[:i+1]
		}
	}
	return nil
}
