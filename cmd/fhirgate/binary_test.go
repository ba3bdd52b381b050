package main

// The harness of the tests that drive the real binary: the same `go build`
// of ./cmd/fhirgate that `make run` starts, `fhirgate serve` on a free
// address with its data in a temporary directory, `fhirgate token` (and the
// other commands) run with the server's environment, and a small HTTP
// client with status checks and JSON decoding.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/internal/smtptest"
)

// buildBinary builds ./cmd/fhirgate into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fhirgate")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// binaryEnv is the environment of a server on addr with its data in dir
// (errors only in the log), then extra ("K=V").
func binaryEnv(addr, dir string, extra ...string) []string {
	env := append(os.Environ(), "FHIRGATE_ADDR="+addr, "FHIRGATE_BASE_URL=http://"+addr+"/fhir",
		"FHIRGATE_DATA_DIR="+dir, "FHIRGATE_LOG_LEVEL=error")
	return append(env, extra...)
}

// waitReady polls addr's /readyz for up to 30 s: whether it answered 200.
func waitReady(addr string) bool {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if r, err := http.Get("http://" + addr + "/readyz"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return true
			}
		}
	}
	return false
}

// serveBinary starts `bin serve` with env, waits until addr's /readyz
// answers and stops it with SIGINT when the test ends.
func serveBinary(t *testing.T, bin string, env []string, addr string) {
	t.Helper()
	srv := exec.Command(bin, "serve")
	srv.Env = env
	var stderr bytes.Buffer
	srv.Stderr = &stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Signal(os.Interrupt)
		_ = srv.Wait()
	})
	if !waitReady(addr) {
		t.Fatalf("server did not become ready: %s", stderr.String())
	}
}

// binaryServer is a running `fhirgate serve` (startBinary): its binary,
// data directory, address and environment, and the SMTP server it sends
// email to (withMail); its embedded binClient calls the FHIR base.
type binaryServer struct {
	binClient
	bin, dir, addr string
	env            []string
	mail           *smtptest.Server
}

// binOption adds to a binaryServer's environment before it starts.
type binOption func(*binaryServer)

// withEnv adds "K=V" variables.
func withEnv(kv ...string) binOption {
	return func(s *binaryServer) { s.env = append(s.env, kv...) }
}

// withPolicy writes yaml to policy.yaml in the data directory and sets
// FHIRGATE_POLICY_FILE.
func withPolicy(yaml string) binOption {
	return func(s *binaryServer) {
		pol := filepath.Join(s.dir, "policy.yaml")
		if err := os.WriteFile(pol, []byte(yaml), 0o600); err != nil {
			s.t.Fatal(err)
		}
		s.env = append(s.env, "FHIRGATE_POLICY_FILE="+pol)
	}
}

// withMail starts an SMTP server in the test (the server's mail field)
// and sends email through it, with links to https://portal.example.org.
func withMail() binOption {
	return func(s *binaryServer) {
		s.mail = smtptest.Start(s.t)
		withEnv("FHIRGATE_SMTP_URL="+s.mail.URL(), "FHIRGATE_PORTAL_URL=https://portal.example.org")(s)
	}
}

// startBinary builds the binary and serves it on a free address with a new
// data directory; it stops when the test ends. It skips the test under
// testing.Short().
func startBinary(t *testing.T, opts ...binOption) *binaryServer {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the binary")
	}
	s := &binaryServer{bin: buildBinary(t), dir: t.TempDir(), addr: freeAddr(t)}
	s.binClient = binClient{t: t, base: "http://" + s.addr + "/fhir"}
	s.env = binaryEnv(s.addr, s.dir)
	for _, o := range opts {
		o(s)
	}
	serveBinary(t, s.bin, s.env, s.addr)
	return s
}

// run runs `fhirgate args...` with the server's environment: its standard
// output, trimmed.
func (s *binaryServer) run(args ...string) string {
	s.t.Helper()
	cmd := exec.Command(s.bin, args...)
	cmd.Env = s.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("fhirgate %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// token is `fhirgate token args...`: an access token of the built-in issuer.
func (s *binaryServer) token(args ...string) string {
	s.t.Helper()
	return s.run(append([]string{"token"}, args...)...)
}

// binClient calls a FHIR base URL.
type binClient struct {
	t    *testing.T
	base string
}

// binRes is an answer: its status, body and the body as a JSON object.
type binRes struct {
	status int
	body   []byte
	json   map[string]any
}

// send is one request to url with token (none when "") and headers
// "Key: value"; the answer's body is read and closed.
func (c binClient) send(token, method, url, body string, hdr ...string) (*http.Response, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// do sends a FHIR request to base/path (a JSON body) and fails the test
// unless the status is want; an error status must carry an
// OperationOutcome.
func (c binClient) do(token, method, path, body string, want int, hdr ...string) binRes {
	c.t.Helper()
	resp, b := c.send(token, method, c.base+"/"+path, body, append([]string{"Content-Type: application/fhir+json"}, hdr...)...)
	r := binRes{status: resp.StatusCode, body: b}
	_ = json.Unmarshal(b, &r.json)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	if want >= 400 && r.json["resourceType"] != "OperationOutcome" {
		c.t.Fatalf("%s %s: %d without an OperationOutcome: %s", method, path, want, b)
	}
	return r
}

func (r binRes) str(k string) string { s, _ := r.json[k].(string); return s }

// ids are a Bundle's entries as "Type/id".
func (r binRes) ids() []string {
	var out []string
	es, _ := r.json["entry"].([]any)
	for _, e := range es {
		m, _ := e.(map[string]any)["resource"].(map[string]any)
		out = append(out, fmt.Sprint(m["resourceType"], "/", m["id"]))
	}
	return out
}

// param is a Parameters' valueString (or valueId) named name.
func param(r binRes, name string) string {
	ps, _ := r.json["parameter"].([]any)
	for _, p := range ps {
		m, _ := p.(map[string]any)
		if m["name"] == name {
			s, _ := m["valueString"].(string)
			if s == "" {
				s, _ = m["valueId"].(string)
			}
			return s
		}
	}
	return ""
}

// assertNoPHI fails the test when an email's subject, body or a header
// other than To contains one of secret.
func assertNoPHI(t *testing.T, what string, m smtptest.Mail, secret []string) {
	t.Helper()
	text := m.Subject + "\n" + m.Body
	for k, vs := range m.Header {
		// To is the recipient's own address; Message-Id is random hex
		// (it could spell a value such as "7.9" by chance).
		if k != "To" && !strings.EqualFold(k, "Message-Id") {
			text += "\n" + strings.Join(vs, " ")
		}
	}
	for _, s := range secret {
		if strings.Contains(text, s) {
			t.Errorf("%s email contains %q:\n%s", what, s, text)
		}
	}
}

// visitLink is the eVisit invitation link to addr in m's body.
func visitLink(t *testing.T, m smtptest.Mail, addr string) string {
	t.Helper()
	link := regexp.MustCompile(`http://` + regexp.QuoteMeta(addr) + `/visit/[A-Za-z0-9_-]+`).FindString(m.Body)
	if link == "" {
		t.Fatalf("no invitation link in: %s", m.Body)
	}
	return link
}
