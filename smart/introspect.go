package smart

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
)

func (v *Verifier) introspectionEnabled() bool {
	return v.cfg.IntrospectionURL != "" || v.cfg.IntrospectionClientID != ""
}

// introspectionURL is the configured URL or the first issuer's discovered
// introspection_endpoint.
func (v *Verifier) introspectionURL(ctx context.Context) (string, error) {
	if v.cfg.IntrospectionURL != "" {
		return v.cfg.IntrospectionURL, nil
	}
	ep, err := v.Endpoints(ctx)
	if err != nil {
		return "", err
	}
	if ep.IntrospectionEndpoint == "" {
		return "", fmt.Errorf("smart: issuer %s publishes no introspection_endpoint", ep.Issuer)
	}
	return ep.IntrospectionEndpoint, nil
}

// introspect asks the authorization server about an opaque token (RFC 7662
// section 2). The resource server authenticates with client_secret_basic
// (RFC 6749 section 2.3.1: id and secret form-encoded, then Basic).
// An inactive token is invalid_token; an unreachable or failing endpoint is
// a 503, so clients do not throw away tokens that may be fine.
func (v *Verifier) introspect(ctx context.Context, token string) (*Principal, error) {
	u, err := v.introspectionURL(ctx)
	if err != nil {
		return nil, fhir.Errorf(fhir.KindUnavailable, "token introspection is not available").Wrap(err)
	}
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fhir.Errorf(fhir.KindUnavailable, "token introspection is not available").Wrap(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if v.cfg.IntrospectionClientID != "" {
		req.SetBasicAuth(url.QueryEscape(v.cfg.IntrospectionClientID), url.QueryEscape(v.cfg.IntrospectionSecret))
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, fhir.Errorf(fhir.KindUnavailable, "token introspection failed").Wrap(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fhir.Errorf(fhir.KindUnavailable, "token introspection failed").Wrap(err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fhir.Errorf(fhir.KindUnavailable, "token introspection failed").
			Wrap(fmt.Errorf("introspection endpoint answered %s", resp.Status))
	}
	claims, err := decodeJSONObject(body)
	if err != nil {
		return nil, fhir.Errorf(fhir.KindUnavailable, "token introspection failed").Wrap(fmt.Errorf("introspection response: %w", err))
	}
	if active, _ := claims["active"].(bool); !active {
		return nil, InvalidToken("token is not active")
	}
	now := v.cfg.Now()
	p, err := v.principal(claims, token)
	if err != nil {
		return nil, err
	}
	if exp, ok, err := numericDate(claims, "exp"); err != nil {
		return nil, InvalidToken("malformed exp").Wrap(err)
	} else if ok {
		if !now.Before(exp.Add(v.cfg.Skew)) {
			return nil, InvalidToken("token expired")
		}
		p.ExpiresAt = exp
	}
	if nbf, ok, err := numericDate(claims, "nbf"); err != nil {
		return nil, InvalidToken("malformed nbf").Wrap(err)
	} else if ok && now.Add(v.cfg.Skew).Before(nbf) {
		return nil, InvalidToken("token not yet valid")
	}
	// aud and iss are optional in an introspection response (RFC 7662
	// section 2.2); when present they must match.
	if aud, ok := claims["aud"]; ok && !v.audienceOK(aud) {
		return nil, InvalidToken("token is not for this server (aud)")
	}
	if iss, _ := claims["iss"].(string); iss != "" {
		if len(v.issuers) > 0 && !slices.ContainsFunc(v.issuers, func(is *issuer) bool { return is.url == iss }) {
			return nil, InvalidToken("token issuer is not trusted")
		}
		p.Issuer = iss
	}
	if tt, _ := claims["token_type"].(string); strings.Contains(strings.ToLower(tt), "refresh") {
		return nil, InvalidToken("not an access token")
	}
	return p, nil
}
