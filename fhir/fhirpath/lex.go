package fhirpath

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The lexer (fhirpath.html#grammar, the lexical rules of the N1 grammar).

type tokKind int

const (
	tkEOF tokKind = iota
	tkIdent
	tkString
	tkNumber
	tkOp
	tkVar  // %name
	tkDate // @2020-01-01
)

type token struct {
	kind tokKind
	s    string
	pos  int
	// quoted: a `delimited` identifier, never a keyword.
	quoted bool
}

func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("unterminated comment at %d", i)
			}
			i += end + 4
		case c == '\'':
			s, n, err := lexQuoted(src[i:], '\'')
			if err != nil {
				return nil, fmt.Errorf("at %d: %w", i, err)
			}
			toks = append(toks, token{kind: tkString, s: s, pos: i})
			i += n
		case c == '`':
			s, n, err := lexQuoted(src[i:], '`')
			if err == nil && s == "" {
				err = fmt.Errorf("empty identifier")
			}
			if err != nil {
				return nil, fmt.Errorf("at %d: %w", i, err)
			}
			toks = append(toks, token{kind: tkIdent, s: s, pos: i, quoted: true})
			i += n
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && src[j] >= '0' && src[j] <= '9' {
				j++
			}
			if j+1 < len(src) && src[j] == '.' && src[j+1] >= '0' && src[j+1] <= '9' {
				j++
				for j < len(src) && src[j] >= '0' && src[j] <= '9' {
					j++
				}
			}
			toks = append(toks, token{kind: tkNumber, s: src[i:j], pos: i})
			i = j
		case c == '@':
			j := i + 1
			for j < len(src) && isDateChar(src[j]) {
				j++
			}
			toks = append(toks, token{kind: tkDate, s: src[i+1 : j], pos: i})
			i = j
		case c == '%':
			j := i + 1
			if j < len(src) && (src[j] == '\'' || src[j] == '`') {
				s, n, err := lexQuoted(src[j:], src[j])
				if err != nil {
					return nil, fmt.Errorf("at %d: %w", i, err)
				}
				toks = append(toks, token{kind: tkVar, s: s, pos: i})
				i = j + n
				continue
			}
			for j < len(src) && isIdentChar(src[j]) {
				j++
			}
			toks = append(toks, token{kind: tkVar, s: src[i+1 : j], pos: i})
			i = j
		case c == '$' || c == '_' || c >= utf8.RuneSelf || unicode.IsLetter(rune(c)):
			j := i + 1
			for j < len(src) && isIdentChar(src[j]) {
				j++
			}
			toks = append(toks, token{kind: tkIdent, s: src[i:j], pos: i})
			i = j
		default:
			op := string(c)
			if i+1 < len(src) {
				switch two := src[i : i+2]; two {
				case "!=", "!~", "<=", ">=":
					op = two
				}
			}
			if !strings.Contains(".()[]{},|=~<>+-*/&!", op[:1]) || op == "!" {
				return nil, fmt.Errorf("unexpected character %q at %d", c, i)
			}
			toks = append(toks, token{kind: tkOp, s: op, pos: i})
			i += len(op)
		}
	}
	toks = append(toks, token{kind: tkEOF, pos: len(src)})
	return toks, nil
}

func isIdentChar(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isDateChar(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == ':' || c == 'T' || c == '.' || c == 'Z' || c == '+'
}

// lexQuoted reads a quoted string or identifier starting at s[0] == q,
// handling the escapes of fhirpath.html#string (\' \" \` \\ \/ \f \n \r \t
// and \uXXXX).
func lexQuoted(s string, q byte) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		if c == q {
			return b.String(), i + 1, nil
		}
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(s) {
			break
		}
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'f':
			b.WriteByte('\f')
		case 'u':
			if i+4 < len(s) {
				if r, err := strconv.ParseUint(s[i+1:i+5], 16, 32); err == nil {
					b.WriteRune(rune(r))
					i += 4
					continue
				}
			}
			return "", 0, fmt.Errorf("bad \\u escape")
		default:
			b.WriteByte(s[i])
		}
	}
	return "", 0, fmt.Errorf("unterminated %c", q)
}
