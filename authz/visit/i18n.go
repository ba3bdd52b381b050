package visit

// Messages of the pages and emails, English and French (Canadian usage:
// "NIP" for PIN, "courriel"). None names a clinic, a clinician or a patient.
var messages = map[string][2]string{
	"site.name":   {"Virtual visit", "Visite virtuelle"},
	"lang.switch": {"Français", "English"},
	"lang.label":  {"Langue : français", "Language: English"},
	"emergency": {"This page is not for emergencies. In an emergency, call 911.",
		"Cette page n'est pas destinée aux urgences. En cas d'urgence, composez le 911."},

	"pin.title": {"Enter your PIN", "Saisissez votre NIP"},
	"pin.intro": {"You are invited to a virtual visit. Enter the PIN your care team gave you separately (by phone or text message).",
		"Vous êtes invité(e) à une visite virtuelle. Saisissez le NIP que votre équipe soignante vous a remis séparément (par téléphone ou message texte)."},
	"pin.label":  {"PIN", "NIP"},
	"pin.hint":   {"Digits only. This link works once.", "Chiffres seulement. Ce lien ne fonctionne qu'une fois."},
	"pin.submit": {"Continue", "Continuer"},
	"pin.wrong": {"This PIN is not right. Attempts left: %d.",
		"Ce NIP est incorrect. Tentatives restantes : %d."},
	"pin.csrf": {"This form has expired. Enter your PIN again.", "Ce formulaire a expiré. Saisissez de nouveau votre NIP."},

	"join.title": {"Your virtual visit", "Votre visite virtuelle"},
	"join.intro": {"Join your visit at the time below with this link.", "Joignez-vous à votre visite à l'heure ci-dessous avec ce lien."},
	"join.when":  {"Time", "Heure"},
	"join.link":  {"Join the visit", "Rejoindre la visite"},
	"join.url":   {"Link address:", "Adresse du lien :"},

	"used.title": {"This link was already used", "Ce lien a déjà servi"},
	"used.body": {"This invitation link has already been used: it works only once. Ask your care team to send you a new invitation.",
		"Ce lien d'invitation a déjà servi : il ne fonctionne qu'une fois. Demandez à votre équipe soignante de vous envoyer une nouvelle invitation."},
	"expired.title": {"This link has expired", "Ce lien a expiré"},
	"expired.body": {"This invitation link has expired. Ask your care team to send you a new invitation.",
		"Ce lien d'invitation a expiré. Demandez à votre équipe soignante de vous envoyer une nouvelle invitation."},
	"locked.title": {"This invitation is locked", "Cette invitation est verrouillée"},
	"locked.body": {"A wrong PIN was entered too many times, so this invitation is locked. Ask your care team to send you a new invitation.",
		"Un NIP incorrect a été saisi trop de fois : cette invitation est verrouillée. Demandez à votre équipe soignante de vous envoyer une nouvelle invitation."},
	"invalid.title": {"This link cannot be used", "Ce lien ne peut pas servir"},
	"invalid.body": {"This invitation link is not valid. Check that you opened the whole link from your email, or ask your care team to send you a new invitation.",
		"Ce lien d'invitation n'est pas valide. Vérifiez que vous avez ouvert le lien complet de votre courriel, ou demandez à votre équipe soignante de vous envoyer une nouvelle invitation."},
	"ended.title": {"Your visit session has ended", "Votre session de visite est terminée"},
	"ended.body": {"Your visit session has ended or was opened in another browser. Ask your care team to send you a new invitation.",
		"Votre session de visite est terminée ou a été ouverte dans un autre navigateur. Demandez à votre équipe soignante de vous envoyer une nouvelle invitation."},
	"cancelled.title":   {"This visit is no longer scheduled", "Cette visite n'est plus prévue"},
	"cancelled.body":    {"This visit is no longer scheduled. Contact your care team.", "Cette visite n'est plus prévue. Communiquez avec votre équipe soignante."},
	"unavailable.title": {"The visit link is not available", "Le lien de la visite n'est pas disponible"},
	"unavailable.body": {"The link to join this visit is not available right now. Contact your care team.",
		"Le lien pour rejoindre cette visite n'est pas disponible pour le moment. Communiquez avec votre équipe soignante."},
	"throttled.title": {"Too many attempts", "Trop de tentatives"},
	"throttled.body":  {"Too many attempts. Wait a minute and try again.", "Trop de tentatives. Attendez une minute et réessayez."},
	"error.title":     {"Something went wrong", "Un problème est survenu"},
	"error.body":      {"This step could not be completed. Please try again later.", "Cette étape n'a pas pu être terminée. Veuillez réessayer plus tard."},

	// The invitation email (MailOutbox): no name, clinic, time or contact.
	"mail.subject": {"Your virtual visit invitation", "Votre invitation à une visite virtuelle"},
	"mail.body": {"You are invited to a virtual visit.\r\n\r\nOpen this link:\r\n%s\r\n\r\nYou will need the PIN given to you separately. The link works once and expires.\r\n\r\nIf you did not expect this message, you can ignore it.\r\n",
		"Vous êtes invité(e) à une visite virtuelle.\r\n\r\nOuvrez ce lien :\r\n%s\r\n\r\nVous aurez besoin du NIP qui vous a été remis séparément. Le lien ne fonctionne qu'une fois et expire.\r\n\r\nSi vous n'attendiez pas ce message, vous pouvez l'ignorer.\r\n"},
}

// msg returns the message in lang (French falls back to English; an
// unknown key shows itself).
func msg(lang, key string) string {
	m, ok := messages[key]
	if !ok {
		return key
	}
	if lang == "fr" && m[1] != "" {
		return m[1]
	}
	return m[0]
}
