package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/authz"
	"github.com/fhirgate/fhirgate/internal/app"
)

// config is fhirgate's configuration: flags override environment variables,
// which override defaults. Every setting is documented in README.md.
type config struct {
	Addr          string
	BaseURL       string
	MongoURI      string
	Store         string // "sqlite" (default) or "ferretdb"; "" with MongoURI
	SQLiteSync    string // FHIRGATE_SQLITE_SYNCHRONOUS: full (default) or normal
	EmbeddedAddr  string
	DebugAddr     string
	DataDir       string
	Database      string
	MaxBody       int64
	MaxEntries    int
	LogLevel      string
	LogFormat     string
	OIDCIssuers   []string
	OIDCAudience  string
	Introspection string
	IntroClient   string
	IntroSecret   string
	ScopeClaim    string
	PatientClaim  string
	FHIRUserClaim string
	AuthDisabled  bool
	PolicyFile    string
	SearchParams  string
	ProxyAge      int
	ProxyRels     []string
	Sensitive     []string
	ShutdownGrace time.Duration
	AuditQueue    int
	Notify        app.NotifyOptions   // FHIRGATE_SMTP_URL, FHIRGATE_PORTAL_URL, ... (app.NotifyFromEnv)
	Visit         app.VisitOptions    // FHIRGATE_VISIT_GRACE, ... (app.VisitFromEnv)
	Workflow      app.WorkflowOptions // app.WorkflowFromEnv
	Booking       app.BookingOptions  // app.BookingFromEnv
	Export        app.ExportOptions   // app.ExportFromEnv
	Usage         app.UsageOptions    // app.UsageFromEnv

	// The built-in authorization server (no FHIRGATE_OIDC_ISSUER).
	Federation     *authz.FederationConfig
	AccessTokenTTL time.Duration
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseConfig reads flags (from args) and the environment.
func parseConfig(args []string) (*config, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	c := &config{}
	var maxBody, maxEntries, issuers, proxyAge, rels, sensitive, grace, auditQueue, authDisabled string
	fs.StringVar(&c.Addr, "addr", env("FHIRGATE_ADDR", "127.0.0.1:8080"), "listen address (FHIRGATE_ADDR)")
	fs.StringVar(&c.BaseURL, "base-url", env("FHIRGATE_BASE_URL", "http://localhost:8080/fhir"), "public FHIR base URL (FHIRGATE_BASE_URL)")
	fs.StringVar(&c.MongoURI, "mongodb-uri", env("FHIRGATE_MONGODB_URI", ""), "MongoDB URI; empty = embedded store (FHIRGATE_MONGODB_URI)")
	fs.StringVar(&c.SQLiteSync, "sqlite-synchronous", env("FHIRGATE_SQLITE_SYNCHRONOUS", "full"), "SQLite store durability: full (default: every commit on disk before the answer, power loss included) or normal (WAL: survives a crash of the process, not of the machine; faster commits) (FHIRGATE_SQLITE_SYNCHRONOUS)")
	fs.StringVar(&c.Store, "store", env("FHIRGATE_STORE", ""), "embedded store without a MongoDB URI: sqlite (default, <data dir>/fhirgate.db) or ferretdb (<data dir>/ferretdb) (FHIRGATE_STORE)")
	fs.StringVar(&c.DebugAddr, "debug-addr", env("FHIRGATE_DEBUG_ADDR", ""), "listen address of the Go profiler (/debug/pprof/), e.g. 127.0.0.1:6060; empty = off. Never expose it publicly (FHIRGATE_DEBUG_ADDR)")
	fs.StringVar(&c.EmbeddedAddr, "embedded-addr", env("FHIRGATE_EMBEDDED_ADDR", ""), "listen address of the embedded store, e.g. 127.0.0.1:27017 to inspect it with mongosh; empty = a free loopback port (FHIRGATE_EMBEDDED_ADDR)")
	fs.StringVar(&c.DataDir, "data-dir", env("FHIRGATE_DATA_DIR", "./data"), "data directory (FHIRGATE_DATA_DIR)")
	fs.StringVar(&c.Database, "database", env("FHIRGATE_DATABASE", "fhirgate"), "database name (FHIRGATE_DATABASE)")
	fs.StringVar(&maxBody, "max-body", env("FHIRGATE_MAX_BODY", "16MiB"), "maximum request body (FHIRGATE_MAX_BODY)")
	fs.StringVar(&maxEntries, "max-bundle-entries", env("FHIRGATE_MAX_BUNDLE_ENTRIES", "10000"), "maximum Bundle entries (FHIRGATE_MAX_BUNDLE_ENTRIES)")
	fs.StringVar(&c.LogLevel, "log-level", env("FHIRGATE_LOG_LEVEL", "info"), "debug|info|warn|error (FHIRGATE_LOG_LEVEL)")
	fs.StringVar(&c.LogFormat, "log-format", env("FHIRGATE_LOG_FORMAT", "text"), "text|json (FHIRGATE_LOG_FORMAT)")
	fs.StringVar(&issuers, "oidc-issuer", env("FHIRGATE_OIDC_ISSUER", ""), "trusted OpenID issuers, comma separated; empty = development issuer (FHIRGATE_OIDC_ISSUER)")
	fs.StringVar(&c.OIDCAudience, "oidc-audience", env("FHIRGATE_OIDC_AUDIENCE", ""), "required token audience; default the base URL (FHIRGATE_OIDC_AUDIENCE)")
	fs.StringVar(&c.Introspection, "introspection-url", env("FHIRGATE_INTROSPECTION_URL", ""), "RFC 7662 endpoint for opaque tokens (FHIRGATE_INTROSPECTION_URL)")
	fs.StringVar(&c.IntroClient, "introspection-client-id", env("FHIRGATE_INTROSPECTION_CLIENT_ID", ""), "introspection client id (FHIRGATE_INTROSPECTION_CLIENT_ID)")
	fs.StringVar(&c.IntroSecret, "introspection-secret", env("FHIRGATE_INTROSPECTION_SECRET", ""), "introspection client secret (FHIRGATE_INTROSPECTION_SECRET)")
	fs.StringVar(&c.ScopeClaim, "scope-claim", env("FHIRGATE_SCOPE_CLAIM", ""), "claim holding scopes; default scope, then scp (FHIRGATE_SCOPE_CLAIM)")
	fs.StringVar(&c.PatientClaim, "patient-claim", env("FHIRGATE_PATIENT_CLAIM", ""), "claim holding the patient context; default patient (FHIRGATE_PATIENT_CLAIM)")
	fs.StringVar(&c.FHIRUserClaim, "fhiruser-claim", env("FHIRGATE_FHIRUSER_CLAIM", ""), "claim holding fhirUser; default fhirUser (FHIRGATE_FHIRUSER_CLAIM)")
	fs.StringVar(&authDisabled, "auth-disabled", env("FHIRGATE_AUTH_DISABLED", "false"), "DANGEROUS: serve without authorization, development/benchmarks only (FHIRGATE_AUTH_DISABLED)")
	fs.StringVar(&c.PolicyFile, "policy-file", env("FHIRGATE_POLICY_FILE", ""), "release rules YAML (FHIRGATE_POLICY_FILE)")
	fs.StringVar(&c.SearchParams, "search-parameters", env("FHIRGATE_SEARCH_PARAMETERS", ""), "JSON file of custom SearchParameters (FHIRGATE_SEARCH_PARAMETERS)")
	fs.StringVar(&proxyAge, "proxy-max-child-age", env("FHIRGATE_PROXY_MAX_CHILD_AGE", "12"), "age until which parents get automatic access (FHIRGATE_PROXY_MAX_CHILD_AGE)")
	fs.StringVar(&rels, "proxy-relationships", env("FHIRGATE_PROXY_RELATIONSHIPS", ""), "system|code relationships giving parental access (FHIRGATE_PROXY_RELATIONSHIPS)")
	fs.StringVar(&sensitive, "sensitive-labels", env("FHIRGATE_SENSITIVE_LABELS", ""), "system|code security labels withheld from proxies (FHIRGATE_SENSITIVE_LABELS)")
	fs.StringVar(&grace, "shutdown-grace", env("FHIRGATE_SHUTDOWN_GRACE", "20s"), "time to finish in-flight requests on shutdown (FHIRGATE_SHUTDOWN_GRACE)")
	fs.StringVar(&auditQueue, "audit-queue", env("FHIRGATE_AUDIT_QUEUE", "10000"), "audit queue size (FHIRGATE_AUDIT_QUEUE)")
	var fed authz.FederationConfig
	var tokenTTL string
	fs.StringVar(&fed.Issuer, "login-issuer", env("FHIRGATE_LOGIN_ISSUER", ""), "the organisation's OpenID provider for federated login to the built-in authorization server (FHIRGATE_LOGIN_ISSUER)")
	fs.StringVar(&fed.ClientID, "login-client-id", env("FHIRGATE_LOGIN_CLIENT_ID", ""), "fhirgate's client id at that provider (FHIRGATE_LOGIN_CLIENT_ID)")
	fs.StringVar(&fed.ClientSecret, "login-client-secret", env("FHIRGATE_LOGIN_CLIENT_SECRET", ""), "fhirgate's client secret at that provider (FHIRGATE_LOGIN_CLIENT_SECRET)")
	fs.StringVar(&fed.Name, "login-name", env("FHIRGATE_LOGIN_NAME", ""), "label of the provider's login button (FHIRGATE_LOGIN_NAME)")
	fs.StringVar(&fed.IdentifierSystem, "login-identifier-system", env("FHIRGATE_LOGIN_IDENTIFIER_SYSTEM", ""), "FHIR identifier system holding the provider's subjects; default the provider's issuer (FHIRGATE_LOGIN_IDENTIFIER_SYSTEM)")
	fs.StringVar(&tokenTTL, "access-token-ttl", env("FHIRGATE_ACCESS_TOKEN_TTL", "1h"), "lifetime of access tokens of the built-in authorization server (FHIRGATE_ACCESS_TOKEN_TTL)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var errs []error
	bad := func(name, format string, a ...any) { errs = append(errs, fmt.Errorf(name+": "+format, a...)) }
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		bad("FHIRGATE_ADDR", "%q is not host:port", c.Addr)
	}
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		bad("FHIRGATE_BASE_URL", "%q is not an absolute http(s) URL", c.BaseURL)
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.MongoURI != "" && !strings.HasPrefix(c.MongoURI, "mongodb://") && !strings.HasPrefix(c.MongoURI, "mongodb+srv://") {
		bad("FHIRGATE_MONGODB_URI", "must start with mongodb:// or mongodb+srv://")
	}
	switch c.Store = strings.ToLower(c.Store); {
	case c.Store != "" && c.Store != "sqlite" && c.Store != "ferretdb":
		bad("FHIRGATE_STORE", "%q is not sqlite or ferretdb", c.Store)
	case c.Store != "" && c.MongoURI != "":
		bad("FHIRGATE_STORE", "%s is an embedded store; FHIRGATE_MONGODB_URI selects MongoDB instead", c.Store)
	}
	if c.SQLiteSync = strings.ToLower(c.SQLiteSync); c.SQLiteSync != "full" && c.SQLiteSync != "normal" {
		bad("FHIRGATE_SQLITE_SYNCHRONOUS", "%q is not full or normal", c.SQLiteSync)
	}
	if c.DebugAddr != "" {
		if _, _, err := net.SplitHostPort(c.DebugAddr); err != nil {
			bad("FHIRGATE_DEBUG_ADDR", "%q is not host:port", c.DebugAddr)
		}
	}
	if c.EmbeddedAddr != "" {
		if _, _, err := net.SplitHostPort(c.EmbeddedAddr); err != nil {
			bad("FHIRGATE_EMBEDDED_ADDR", "%q is not host:port", c.EmbeddedAddr)
		}
	}
	if c.DataDir == "" {
		bad("FHIRGATE_DATA_DIR", "must not be empty")
	}
	if c.Database == "" || strings.ContainsAny(c.Database, "/\\. \"$") || len(c.Database) > 63 {
		bad("FHIRGATE_DATABASE", "%q is not a valid database name", c.Database)
	}
	if n, err := parseSize(maxBody); err != nil || n < 1024 {
		bad("FHIRGATE_MAX_BODY", "%q is not a size of at least 1KiB (e.g. 16MiB)", maxBody)
	} else {
		c.MaxBody = n
	}
	if n, err := strconv.Atoi(maxEntries); err != nil || n < 1 {
		bad("FHIRGATE_MAX_BUNDLE_ENTRIES", "%q is not a positive integer", maxEntries)
	} else {
		c.MaxEntries = n
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("FHIRGATE_LOG_LEVEL", "%q is not debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("FHIRGATE_LOG_FORMAT", "%q is not text or json", c.LogFormat)
	}
	c.OIDCIssuers = splitList(issuers)
	for _, is := range c.OIDCIssuers {
		if u, err := url.Parse(is); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("FHIRGATE_OIDC_ISSUER", "%q is not an http(s) URL", is)
		}
	}
	if c.OIDCAudience == "" {
		c.OIDCAudience = c.BaseURL
	}
	if b, err := strconv.ParseBool(authDisabled); err != nil {
		bad("FHIRGATE_AUTH_DISABLED", "%q is not true or false", authDisabled)
	} else {
		c.AuthDisabled = b
	}
	if n, err := strconv.Atoi(proxyAge); err != nil || n < 0 || n > 25 {
		bad("FHIRGATE_PROXY_MAX_CHILD_AGE", "%q is not an age from 0 to 25", proxyAge)
	} else {
		c.ProxyAge = n
	}
	c.ProxyRels = splitList(rels)
	c.Sensitive = splitList(sensitive)
	if d, err := time.ParseDuration(grace); err != nil || d < 0 {
		bad("FHIRGATE_SHUTDOWN_GRACE", "%q is not a duration", grace)
	} else {
		c.ShutdownGrace = d
	}
	if n, err := strconv.Atoi(auditQueue); err != nil || n < 1 {
		bad("FHIRGATE_AUDIT_QUEUE", "%q is not a positive integer", auditQueue)
	} else {
		c.AuditQueue = n
	}
	if fed.Issuer != "" || fed.ClientID != "" {
		if u, err := url.Parse(fed.Issuer); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("FHIRGATE_LOGIN_ISSUER", "%q is not an http(s) URL", fed.Issuer)
		}
		if fed.ClientID == "" {
			bad("FHIRGATE_LOGIN_CLIENT_ID", "required with FHIRGATE_LOGIN_ISSUER")
		}
		c.Federation = &fed
	}
	if d, err := time.ParseDuration(tokenTTL); err != nil || d < time.Minute || d > 24*time.Hour {
		bad("FHIRGATE_ACCESS_TOKEN_TTL", "%q is not a duration from 1m to 24h", tokenTTL)
	} else {
		c.AccessTokenTTL = d
	}
	for _, f := range []struct{ name, path string }{{"FHIRGATE_POLICY_FILE", c.PolicyFile}, {"FHIRGATE_SEARCH_PARAMETERS", c.SearchParams}} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				bad(f.name, "%v", err)
			}
		}
	}
	if nc, err := app.NotifyFromEnv(os.Getenv); err != nil {
		errs = append(errs, err)
	} else {
		c.Notify = nc
	}
	if vc, err := app.VisitFromEnv(os.Getenv); err != nil {
		errs = append(errs, err)
	} else {
		c.Visit = vc
	}
	var err error
	if c.Workflow, err = app.WorkflowFromEnv(os.Getenv); err != nil {
		errs = append(errs, err)
	}
	if c.Booking, err = app.BookingFromEnv(os.Getenv); err != nil {
		errs = append(errs, err)
	}
	if c.Export, err = app.ExportFromEnv(os.Getenv); err != nil {
		errs = append(errs, err)
	}
	if c.Usage, err = app.UsageFromEnv(os.Getenv); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid configuration:\n  %w", joinLines(errs))
	}
	return c, nil
}

func joinLines(errs []error) error {
	var b strings.Builder
	for i, e := range errs {
		if i > 0 {
			b.WriteString("\n  ")
		}
		b.WriteString(e.Error())
	}
	return errors.New(b.String())
}

// parseSize reads "16MiB", "1048576", "512KB", "2M".
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	lower := strings.ToLower(s)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"gib", 1 << 30}, {"mib", 1 << 20}, {"kib", 1 << 10}, {"gb", 1e9}, {"mb", 1e6}, {"kb", 1e3}, {"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}, {"b", 1}} {
		if strings.HasSuffix(lower, u.suffix) {
			mult = u.m
			s = strings.TrimSpace(s[:len(s)-len(u.suffix)])
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
