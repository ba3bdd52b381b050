package visit

// Unit checks of the invitation secrets, the cookies and the direct-SMTP
// email; the rules end to end are in internal/app/visit_test.go.

import (
	"io"
	"mime/quotedprintable"
	"net/http/httptest"
	"net/mail"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestSecrets(t *testing.T) {
	seen := map[byte]bool{}
	for range 500 {
		p := newPIN(6)
		if !regexp.MustCompile(`^[0-9]{6}$`).MatchString(p) {
			t.Fatalf("PIN %q", p)
		}
		for i := range len(p) {
			seen[p[i]] = true
		}
	}
	if len(seen) != 10 {
		t.Fatalf("500 PINs used only the digits %v", seen)
	}
	tok := newToken()
	if !validToken(tok) || validToken(tok[1:]) || validToken(strings.Repeat("!", 43)) || hashToken(tok) == tok || len(hashToken(tok)) != 64 {
		t.Fatal("token shape or hash")
	}
	salt := randomBytes(16)
	inv := Invitation{PINSalt: salt, PINHash: hashPIN("123456", salt)}
	if !checkPIN(inv, "123456") || !checkPIN(inv, " 123456 ") || checkPIN(inv, "123457") || checkPIN(inv, "") {
		t.Fatal("checkPIN")
	}
	if string(hashPIN("123456", randomBytes(16))) == string(inv.PINHash) {
		t.Fatal("the salt does not change the hash")
	}
}

func TestStatusOrder(t *testing.T) {
	now := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	base := Invitation{ExpiresAt: now.Add(time.Hour)}
	for _, tc := range []struct {
		inv  func(Invitation) Invitation
		want Status
	}{
		{func(i Invitation) Invitation { return i }, StatusPending},
		{func(i Invitation) Invitation { i.ExpiresAt = now; return i }, StatusExpired},
		{func(i Invitation) Invitation { i.LockedAt = now; return i }, StatusLocked},
		{func(i Invitation) Invitation { i.UsedAt = now; i.ExpiresAt = now; return i }, StatusUsed},
		{func(i Invitation) Invitation { i.UsedAt, i.RevokedAt = now, now; return i }, StatusRevoked},
	} {
		if got := tc.inv(base).Status(now); got != tc.want {
			t.Errorf("status %s, want %s", got, tc.want)
		}
	}
}

// On https the cookies are Secure with the __Host- prefix; always
// HttpOnly and SameSite=Strict.
func TestCookies(t *testing.T) {
	for _, secure := range []bool{true, false} {
		s := &Service{secure: secure}
		w := httptest.NewRecorder()
		s.setCookie(w, sessionCookie, "v", 60)
		c := w.Header().Get("Set-Cookie")
		if !strings.Contains(c, "HttpOnly") || !strings.Contains(c, "SameSite=Strict") || strings.Contains(c, "Secure") != secure ||
			strings.HasPrefix(c, "__Host-fg_visit=") != secure || !strings.Contains(c, "Path=/") {
			t.Errorf("secure=%v: %s", secure, c)
		}
	}
}

func TestInvitationEmail(t *testing.T) {
	link := "https://portal.example/visit/" + newToken()
	for lang, want := range map[string]string{"en": "You are invited to a virtual visit.", "fr": "Vous êtes invité(e) à une visite virtuelle.", "de": "You are invited"} {
		raw, err := InvitationEmail("no-reply@portal.example", "a@example.org", lang, link, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		m, err := mail.ReadMessage(strings.NewReader(string(raw)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(quotedprintable.NewReader(m.Body))
		body := string(b)
		if !strings.Contains(body, want) || !strings.Contains(body, link) || !strings.Contains(body, map[bool]string{true: "NIP", false: "PIN"}[lang == "fr"]) {
			t.Errorf("%s email: %q", lang, body)
		}
		// The fixed text plus the link: no digits beyond the link's.
		if regexp.MustCompile(`[0-9]`).MatchString(strings.ReplaceAll(body, link, "")) {
			t.Errorf("%s email has digits outside the link (a time, a PIN, a phone number?): %q", lang, body)
		}
	}
}
