// Package rest is the HTTP adapter of fhirgate (R4 http.html): gin routes
// that turn an HTTP request into a fhir.Request, run the pipeline, and write
// the fhir.Response. Handlers are thin; FHIR logic lives in fhir/server.
package rest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/smart"
)

// Pipeline runs FHIR requests (fhir/server.Server).
type Pipeline interface {
	Handle(ctx context.Context, req *fhir.Request) *fhir.Response
}

// Verifier checks bearer tokens (smart.Verifier).
type Verifier interface {
	Verify(ctx context.Context, bearer string) (*smart.Principal, error)
}

// Config wires the HTTP adapter.
type Config struct {
	Pipeline Pipeline
	Verifier Verifier // nil: authorization disabled
	MaxBody  int64
	Logger   *slog.Logger
	// Ready reports whether the store is reachable (GET /readyz).
	Ready func(ctx context.Context) error
	// SmartConfiguration renders /.well-known/smart-configuration.
	SmartConfiguration func(ctx context.Context) ([]byte, error)
	// Extra mounts more handlers (e.g. the development issuer) by path prefix.
	Extra map[string]http.Handler
}

// New returns the gin engine serving /fhir, /healthz and /readyz.
func New(cfg Config) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 16 << 20
	}
	r := gin.New()
	r.HandleMethodNotAllowed = false
	// The client address audited is the connection's: X-Forwarded-For is not
	// trusted from arbitrary peers (it would let a caller forge the audit trail).
	_ = r.SetTrustedProxies(nil)
	r.Use(requestID(), accessLog(cfg.Logger), recovery(cfg.Logger))
	h := &handler{cfg: cfg}
	// One catch-all route: gin's tree cannot hold /fhir/*path beside
	// /fhir/.well-known and mounted prefixes, so the few fixed endpoints
	// are matched here and everything under /fhir goes to the pipeline.
	r.Any("/*path", func(c *gin.Context) {
		p := c.Request.URL.Path
		switch {
		case p == "/healthz":
			c.JSON(http.StatusOK, gin.H{"status": "ok"})
		case p == "/readyz":
			h.ready(c)
		case p == "/fhir/.well-known/smart-configuration" || p == "/.well-known/smart-configuration":
			h.smartConfiguration(c)
		case p == "/fhir" || strings.HasPrefix(p, "/fhir/"):
			h.serve(c, strings.Trim(strings.TrimPrefix(p, "/fhir"), "/"))
		default:
			for prefix, x := range cfg.Extra {
				if strings.HasPrefix(p, prefix+"/") {
					x.ServeHTTP(c.Writer, c.Request)
					return
				}
			}
			writeError(c, fhir.Errorf(fhir.KindNotFound, "no endpoint at %s; the FHIR base is /fhir", p), false)
		}
	})
	return r
}

type handler struct{ cfg Config }

func (h *handler) ready(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 3*time.Second)
	defer cancel()
	if h.cfg.Ready != nil {
		if err := h.cfg.Ready(ctx); err != nil {
			h.cfg.Logger.WarnContext(ctx, "not ready", "err", err)
			c.JSON(http.StatusServiceUnavailable, gin.H{"status": "store unreachable"})
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready"})
}

func (h *handler) smartConfiguration(c *gin.Context) {
	if c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead {
		writeError(c, fhir.Errorf(fhir.KindNotAllowed, "use GET"), false)
		return
	}
	if h.cfg.SmartConfiguration == nil {
		writeError(c, fhir.Errorf(fhir.KindNotFound, "SMART is not configured"), false)
		return
	}
	b, err := h.cfg.SmartConfiguration(c.Request.Context())
	if err != nil {
		writeError(c, err, false)
		return
	}
	c.Header("Cache-Control", "public, max-age=300")
	c.Data(http.StatusOK, "application/json", b)
}

// publicPaths need no token (SMART App Launch: discovery stays public).
func public(path string) bool {
	return path == "metadata" || path == ".well-known/smart-configuration"
}

func (h *handler) serve(c *gin.Context, path string) {
	pretty := c.Query("_pretty") == "true"
	if err := negotiate(c); err != nil {
		writeError(c, err, pretty)
		return
	}
	ctx := c.Request.Context()
	if h.cfg.Verifier != nil && !public(path) {
		bearer, ok := bearerToken(c.Request)
		if !ok {
			writeError(c, smart.MissingToken(), pretty)
			return
		}
		p, err := h.cfg.Verifier.Verify(ctx, bearer)
		if err != nil {
			writeError(c, err, pretty)
			return
		}
		ctx = smart.WithPrincipal(ctx, p)
	}
	body, err := readBody(c, h.cfg.MaxBody)
	if err != nil {
		writeError(c, err, pretty)
		return
	}
	q, err := url.ParseQuery(c.Request.URL.RawQuery)
	if err != nil {
		// url.Query() would silently drop the malformed pair and widen the search.
		writeError(c, fhir.Invalid("", "the query string is malformed: %v", err), pretty)
		return
	}
	body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")) // a UTF-8 byte order mark (RFC 8259 §8.1)
	for _, k := range []string{"_format", "_pretty"} {
		q.Del(k)
	}
	hdr := http.Header{}
	for _, k := range []string{"If-Match", "If-None-Exist", "If-None-Match", "If-Modified-Since", "Prefer", "Content-Type", "Accept", "X-Request-Id", "User-Agent"} {
		if v := c.Request.Header.Values(k); len(v) > 0 {
			hdr[k] = v
		}
	}
	hdr.Set("X-Forwarded-For", c.ClientIP())
	resp := h.cfg.Pipeline.Handle(ctx, &fhir.Request{
		Method: c.Request.Method, Path: path, Query: q, Header: hdr, Body: body, Entry: -1,
	})
	write(c, resp, pretty)
}

func bearerToken(r *http.Request) (string, bool) {
	a := r.Header.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		t := strings.TrimSpace(a[7:])
		return t, t != ""
	}
	return "", false
}

// negotiate enforces JSON only (http.html#mime-type): XML is a clear 406
// (Accept, _format) or 415 (Content-Type).
func negotiate(c *gin.Context) error {
	if f := c.Query("_format"); f != "" {
		switch strings.ToLower(f) {
		case "json", "application/json", "application/fhir+json", "application/json+fhir":
		case "xml", "application/xml", "application/fhir+xml", "text/xml", "ttl", "text/turtle", "application/fhir+turtle":
			return fhir.Errorf(fhir.KindNotAcceptable, "_format %q is not supported; fhirgate serves JSON (application/fhir+json)", f)
		default:
			return fhir.Invalid("_format", "_format %q is not a known FHIR format", f)
		}
	} else if acc := c.GetHeader("Accept"); acc != "" && !acceptsJSON(acc) {
		return fhir.Errorf(fhir.KindNotAcceptable, "Accept %q cannot be served; fhirgate serves application/fhir+json", acc)
	}
	if c.Request.ContentLength != 0 || c.Request.Body != nil && c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead {
		ct := c.GetHeader("Content-Type")
		if ct == "" {
			return nil
		}
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil {
			return fhir.Errorf(fhir.KindUnsupportedMedia, "Content-Type %q is not valid", ct)
		}
		switch mt {
		case "application/fhir+json", "application/json", "application/json+fhir", "application/json-patch+json", "application/x-www-form-urlencoded":
		default:
			return fhir.Errorf(fhir.KindUnsupportedMedia, "Content-Type %q is not supported; send application/fhir+json", mt)
		}
	}
	return nil
}

func acceptsJSON(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if params["q"] == "0" {
			continue
		}
		switch mt {
		case "application/fhir+json", "application/json", "application/json+fhir", "*/*", "application/*", "text/plain", "text/html", "text/*":
			return true
		}
	}
	return false
}

func readBody(c *gin.Context, max int64) ([]byte, error) {
	if c.Request.Body == nil {
		return nil, nil
	}
	if c.Request.ContentLength > max {
		return nil, fhir.Errorf(fhir.KindTooLarge, "the body is %d bytes; the limit is %d", c.Request.ContentLength, max)
	}
	b, err := io.ReadAll(io.LimitReader(c.Request.Body, max+1))
	if err != nil {
		return nil, fhir.Invalid("", "the body could not be read").Wrap(err)
	}
	if int64(len(b)) > max {
		return nil, fhir.Errorf(fhir.KindTooLarge, "the body is larger than the limit of %d bytes", max)
	}
	return b, nil
}

// write sends a Response; HEAD gets headers only.
func write(c *gin.Context, resp *fhir.Response, pretty bool) {
	for k, vs := range resp.Header {
		for _, v := range vs {
			c.Writer.Header().Add(k, v)
		}
	}
	if resp.Body == nil || c.Request.Method == http.MethodHead {
		if resp.Body != nil {
			c.Header("Content-Type", contentType(c))
		}
		c.Status(resp.Status)
		c.Writer.WriteHeaderNow()
		return
	}
	body := resp.Body
	if pretty {
		var buf bytes.Buffer
		if json.Indent(&buf, body, "", "  ") == nil {
			body = buf.Bytes()
		}
	}
	c.Data(resp.Status, contentType(c), body)
}

// contentType answers in the JSON flavour the client asked for.
func contentType(c *gin.Context) string {
	acc := c.GetHeader("Accept")
	if strings.Contains(acc, "application/json") && !strings.Contains(acc, "fhir+json") {
		return "application/json; charset=utf-8"
	}
	return "application/fhir+json; charset=utf-8"
}

// writeError is the adapter's path to fhir.Outcome for errors raised
// before the pipeline runs (auth, negotiation, body limits).
func writeError(c *gin.Context, err error, pretty bool) {
	status, oo := fhir.Outcome(err)
	b, _ := json.Marshal(oo)
	h := http.Header{}
	for k, v := range fhir.AsError(err).Header {
		h.Set(k, v)
	}
	write(c, &fhir.Response{Status: status, Header: h, Body: b, Err: err}, pretty)
	c.Abort()
}

func requestID() gin.HandlerFunc {
	return func(c *gin.Context) {
		id := c.GetHeader("X-Request-Id")
		if id == "" || len(id) > 128 {
			var b [12]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
			c.Request.Header.Set("X-Request-Id", id)
		}
		c.Header("X-Request-Id", id)
		c.Next()
	}
}

func accessLog(l *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		l.LogAttrs(c.Request.Context(), slog.LevelInfo, "http",
			slog.String("request_id", c.GetHeader("X-Request-Id")),
			slog.String("method", c.Request.Method),
			slog.String("path", c.Request.URL.Path),
			slog.Int("status", c.Writer.Status()),
			slog.Duration("duration", time.Since(start)))
	}
}

func recovery(l *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				l.ErrorContext(c.Request.Context(), "panic", "value", v, "path", c.Request.URL.Path)
				writeError(c, fhir.AsError(errors.New("panic")), false)
			}
		}()
		c.Next()
	}
}
