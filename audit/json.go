package audit

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// appendJSON writes the same bytes as encodeJSON (encoding/json, HTML
// characters unescaped: field order, omitempty, null for nil pointers and
// slices), without reflection: the writer encodes one AuditEvent per
// request. TestBuildVersionTree compares the two.
func (a *auditEvent) appendJSON(b []byte) []byte {
	b = append(b, `{"resourceType":`...)
	b = str(b, a.ResourceType)
	if a.ID != "" {
		b = append(b, `,"id":`...)
		b = str(b, a.ID)
	}
	if a.Meta != nil {
		b = append(b, `,"meta":{`...)
		n := len(b)
		if len(a.Meta.Profile) > 0 {
			b = append(b, `"profile":[`...)
			for i, p := range a.Meta.Profile {
				if i > 0 {
					b = append(b, ',')
				}
				b = str(b, p)
			}
			b = append(b, ']')
		}
		if len(a.Meta.Security) > 0 {
			if len(b) > n {
				b = append(b, ',')
			}
			b = append(b, `"security":`...)
			b = appendCodings(b, a.Meta.Security)
		}
		b = field(b, n, "versionId", a.Meta.VersionID)
		b = field(b, n, "lastUpdated", a.Meta.LastUpdated)
		b = append(b, '}')
	}
	b = append(b, `,"type":`...)
	b = a.Type.appendJSON(b)
	if len(a.Subtype) > 0 {
		b = append(b, `,"subtype":`...)
		b = appendCodings(b, a.Subtype)
	}
	b = append(b, `,"action":`...)
	b = str(b, a.Action)
	b = append(b, `,"recorded":`...)
	b = str(b, a.Recorded)
	b = append(b, `,"outcome":`...)
	b = str(b, a.Outcome)
	if a.OutcomeDesc != "" {
		b = append(b, `,"outcomeDesc":`...)
		b = str(b, a.OutcomeDesc)
	}
	b = append(b, `,"agent":`...)
	if a.Agent == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range a.Agent {
			if i > 0 {
				b = append(b, ',')
			}
			b = a.Agent[i].appendJSON(b)
		}
		b = append(b, ']')
	}
	b = append(b, `,"source":{"observer":`...)
	b = a.Source.Observer.appendJSON(b)
	b = append(b, `,"type":`...)
	b = appendCodings(b, a.Source.Type)
	b = append(b, '}')
	if len(a.Entity) > 0 {
		b = append(b, `,"entity":[`...)
		for i := range a.Entity {
			if i > 0 {
				b = append(b, ',')
			}
			b = a.Entity[i].appendJSON(b)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// field appends "key":value unless value is empty; start is where the
// object's first member goes (no comma before it).
func field(b []byte, start int, key, value string) []byte {
	if value == "" {
		return b
	}
	if len(b) > start {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, key...)
	b = append(b, `":`...)
	return str(b, value)
}

func appendCodings(b []byte, cs []coding) []byte {
	if cs == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i := range cs {
		if i > 0 {
			b = append(b, ',')
		}
		b = cs[i].appendJSON(b)
	}
	return append(b, ']')
}

func (c *coding) appendJSON(b []byte) []byte {
	b = append(b, `{"system":`...)
	b = str(b, c.System)
	b = append(b, `,"code":`...)
	b = str(b, c.Code)
	if c.Display != "" {
		b = append(b, `,"display":`...)
		b = str(b, c.Display)
	}
	return append(b, '}')
}

func (r *reference) appendJSON(b []byte) []byte {
	if r == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	n := len(b)
	b = field(b, n, "reference", r.Reference)
	if r.Identifier != nil {
		if len(b) > n {
			b = append(b, ',')
		}
		b = append(b, `"identifier":{`...)
		m := len(b)
		b = field(b, m, "system", r.Identifier.System)
		if len(b) > m {
			b = append(b, ',')
		}
		b = append(b, `"value":`...)
		b = str(b, r.Identifier.Value)
		b = append(b, '}')
	}
	b = field(b, n, "display", r.Display)
	return append(b, '}')
}

func (a *agent) appendJSON(b []byte) []byte {
	b = append(b, `{"type":`...)
	if a.Type == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, `{"coding":`...)
		b = appendCodings(b, a.Type.Coding)
		b = append(b, '}')
	}
	b = append(b, `,"who":`...)
	b = a.Who.appendJSON(b)
	if a.Name != "" {
		b = append(b, `,"name":`...)
		b = str(b, a.Name)
	}
	b = append(b, `,"requestor":`...)
	b = strconv.AppendBool(b, a.Requestor)
	if a.Network != nil {
		b = append(b, `,"network":{"address":`...)
		b = str(b, a.Network.Address)
		b = append(b, `,"type":`...)
		b = str(b, a.Network.Type)
		b = append(b, '}')
	}
	return append(b, '}')
}

func (e *entity) appendJSON(b []byte) []byte {
	b = append(b, '{')
	if e.What != nil {
		b = append(b, `"what":`...)
		b = e.What.appendJSON(b)
		b = append(b, ',')
	}
	b = append(b, `"type":`...)
	b = e.Type.appendJSON(b)
	if e.Role != nil {
		b = append(b, `,"role":`...)
		b = e.Role.appendJSON(b)
	}
	n := 0 // a member precedes: always a comma
	b = field(b, n, "name", e.Name)
	b = field(b, n, "description", e.Description)
	b = field(b, n, "query", e.Query)
	return append(b, '}')
}

// str appends s as a JSON string, escaped as encoding/json escapes it
// with HTML escaping off.
func str(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return strSlow(b, s)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// strSlow is str for strings with characters to escape, or non-ASCII ones
// (invalid UTF-8, U+2028, U+2029): encoding/json's own rules.
func strSlow(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}
