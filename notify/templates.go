package notify

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	"mime"
	"strings"
	texttemplate "text/template"
)

// The emails carry no personal health information (Ontario's guidance on
// virtual care: no name, no clinic or physician, no code, no value): each
// template is one fixed sentence per kind and language, the one link, and
// the fixed footer. The only data a template receives is the link; the
// person, the resource and the sender never reach it.

// Templates lists the template names Render knows.
var Templates = []string{"message", "result", "reminder", "invitation", "account"}

// Langs lists the languages of the templates.
var Langs = []string{"en", "fr"}

type wording struct{ Subject, Sentence, Action string }

var wordings = map[string]map[string]wording{
	"en": {
		"message":    {"New message in your portal", "You have a new message in your portal.", "Open your portal"},
		"result":     {"New result in your portal", "A new result is available in your portal.", "Open your portal"},
		"reminder":   {"Upcoming appointment", "You have an upcoming appointment. Sign in to your portal for the details.", "Open your portal"},
		"invitation": {"Invitation to a virtual visit", "You are invited to a virtual visit. Use the link below to join; the PIN is given to you separately. The link works once and expires after the visit.", "Join the visit"},
		"account":    {"Your portal account", "There is news about your portal account. Sign in to your portal for the details.", "Open your portal"},
	},
	"fr": {
		"message":    {"Nouveau message dans votre portail", "Vous avez un nouveau message dans votre portail.", "Ouvrir votre portail"},
		"result":     {"Nouveau résultat dans votre portail", "Un nouveau résultat est disponible dans votre portail.", "Ouvrir votre portail"},
		"reminder":   {"Rendez-vous à venir", "Vous avez un rendez-vous à venir. Connectez-vous à votre portail pour les détails.", "Ouvrir votre portail"},
		"invitation": {"Invitation à une visite virtuelle", "Vous êtes invité(e) à une visite virtuelle. Utilisez le lien ci-dessous pour vous joindre; le NIP vous est donné séparément. Le lien ne fonctionne qu'une fois et expire après la visite.", "Rejoindre la visite"},
		"account":    {"Votre compte du portail", "Il y a du nouveau concernant votre compte du portail. Connectez-vous à votre portail pour les détails.", "Ouvrir votre portail"},
	},
}

var footers = map[string]struct{ Emergency, Why string }{
	"en": {"This portal is not for emergencies. In an emergency, call 911.",
		"You receive this email because notifications are on for your portal account; you can turn them off in the portal. Do not reply to this email."},
	"fr": {"Ce portail n'est pas destiné aux urgences. En cas d'urgence, composez le 911.",
		"Vous recevez ce courriel parce que les notifications sont activées pour votre compte du portail; vous pouvez les désactiver dans le portail. Ne répondez pas à ce courriel."},
}

type tmplData struct {
	Lang                            string
	Subject, Sentence, Action, Link string
	Emergency, Why                  string
}

var textTmpl = texttemplate.Must(texttemplate.New("text").Parse(`{{.Sentence}}

{{.Action}}: {{.Link}}

{{.Emergency}}
{{.Why}}
`))

var htmlTmpl = htmltemplate.Must(htmltemplate.New("html").Parse(`<!DOCTYPE html>
<html lang="{{.Lang}}"><head><meta charset="utf-8"><title>{{.Subject}}</title></head>
<body style="font-family:sans-serif;line-height:1.5">
<p>{{.Sentence}}</p>
<p><a href="{{.Link}}">{{.Action}}</a></p>
<p style="color:#555;font-size:90%">{{.Emergency}}<br>{{.Why}}</p>
</body></html>
`))

// Rendered is a rendered email.
type Rendered struct {
	Subject, Text, HTML string
}

// Render renders template name in lang (unknown languages: English) with
// the one link. An unknown template is an error.
func Render(name, lang, link string) (Rendered, error) {
	lang = strings.ToLower(lang)
	if i := strings.IndexAny(lang, "-_"); i > 0 {
		lang = lang[:i]
	}
	if _, ok := wordings[lang]; !ok {
		lang = "en"
	}
	w, ok := wordings[lang][name]
	if !ok {
		return Rendered{}, fmt.Errorf("notify: no email template %q", name)
	}
	f := footers[lang]
	d := tmplData{Lang: lang, Subject: w.Subject, Sentence: w.Sentence, Action: w.Action, Link: link, Emergency: f.Emergency, Why: f.Why}
	if name == "invitation" {
		d.Why = "" // not a subscription to notifications
	}
	var t, h bytes.Buffer
	if err := textTmpl.Execute(&t, d); err != nil {
		return Rendered{}, fmt.Errorf("notify: render %s: %w", name, err)
	}
	if err := htmlTmpl.Execute(&h, d); err != nil {
		return Rendered{}, fmt.Errorf("notify: render %s: %w", name, err)
	}
	return Rendered{Subject: w.Subject, Text: t.String(), HTML: h.String()}, nil
}

// Message builds the RFC 5322 message of e (multipart/alternative, text
// then HTML, quoted-printable), with the given From, To, Date and
// Message-ID header values.
func (e Rendered) Message(from, to, date, msgID string) []byte {
	const boundary = "fhirgate-alt-7d1c3b"
	var b bytes.Buffer
	hdr := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	hdr("From", from)
	hdr("To", to)
	hdr("Subject", mime.QEncoding.Encode("utf-8", e.Subject))
	hdr("Date", date)
	hdr("Message-ID", msgID)
	hdr("MIME-Version", "1.0")
	hdr("Auto-Submitted", "auto-generated")
	hdr("Content-Type", `multipart/alternative; boundary="`+boundary+`"`)
	b.WriteString("\r\n")
	for _, part := range []struct{ typ, body string }{{"text/plain", e.Text}, {"text/html", e.HTML}} {
		b.WriteString("--" + boundary + "\r\n")
		hdr("Content-Type", part.typ+"; charset=utf-8")
		hdr("Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		b.WriteString(quotedPrintable(part.body))
		b.WriteString("\r\n")
	}
	b.WriteString("--" + boundary + "--\r\n")
	return b.Bytes()
}
