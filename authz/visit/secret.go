package visit

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"math/big"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
)

// randomBytes returns n bytes from crypto/rand (which does not fail on
// supported platforms; Go 1.24+ panics rather than return short reads).
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// newToken is a link or session secret: 256 random bits, base64url (43 characters).
func newToken() string { return base64.RawURLEncoding.EncodeToString(randomBytes(32)) }

// validToken reports whether s has a token's shape (checked before any lookup).
func validToken(s string) bool {
	if len(s) != 43 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}

// hashToken is the stored form of a high-entropy secret: hex SHA-256.
// (A 256-bit random token needs no salt or slow hash.)
func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// newPIN is a uniformly random PIN of n decimal digits (crypto/rand).
func newPIN(n int) string {
	var b strings.Builder
	ten := big.NewInt(10)
	for range n {
		d, _ := rand.Int(rand.Reader, ten)
		b.WriteByte(byte('0' + d.Int64()))
	}
	return b.String()
}

// argon2id parameters: OWASP's minimum (19 MiB, 2 passes, 1 lane). A PIN
// is short, so its strength is the link token it goes with, the lockout
// after MaxAttempts and the expiry; the slow hash only slows an offline
// guess of the PIN from a stolen database, where the token cannot be
// recovered from its SHA-256 anyway.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

func hashPIN(pin string, salt []byte) []byte {
	return argon2.IDKey([]byte(pin), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
}

// checkPIN compares in constant time.
func checkPIN(inv Invitation, pin string) bool {
	pin = strings.TrimSpace(pin)
	if len(pin) == 0 || len(pin) > 32 {
		return false
	}
	return subtle.ConstantTimeCompare(hashPIN(pin, inv.PINSalt), inv.PINHash) == 1
}

// limiter allows n events per window per key (a fixed window; memory is
// bounded by dropping windows that ended).
type limiter struct {
	mu     sync.Mutex
	n      int
	window time.Duration
	m      map[string]*slot
}

type slot struct {
	start time.Time
	count int
}

func newLimiter(n int, window time.Duration) *limiter {
	return &limiter{n: n, window: window, m: map[string]*slot{}}
}

func (l *limiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) > 10000 {
		for k, s := range l.m {
			if now.Sub(s.start) >= l.window {
				delete(l.m, k)
			}
		}
	}
	s := l.m[key]
	if s == nil || now.Sub(s.start) >= l.window || now.Before(s.start) {
		s = &slot{start: now}
		l.m[key] = s
	}
	s.count++
	return s.count <= l.n
}
