package authz

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/fhirgate/fhirgate/smart"
)

// Messages of the pages, English and French. A missing French message
// falls back to English, a missing key shows the key (tests check that
// every key exists in both).
var messages = map[string][2]string{
	"site.name":     {"Patient portal", "Portail patient"},
	"lang.switch":   {"Français", "English"},
	"lang.label":    {"Langue : français", "Language: English"},
	"nav.apps":      {"My apps", "Mes applications"},
	"nav.logout":    {"Sign out", "Se déconnecter"},
	"form.required": {"required", "obligatoire"},

	"error.title":       {"Something went wrong", "Un problème est survenu"},
	"error.not_found":   {"This page does not exist.", "Cette page n'existe pas."},
	"error.bad_request": {"This request is not valid.", "Cette demande n'est pas valide."},
	"error.unknown_client": {"This app is not registered with the portal. Contact the app's publisher.",
		"Cette application n'est pas inscrite auprès du portail. Contactez son éditeur."},
	"error.bad_redirect": {"This app sent an address the portal does not know. For your safety, you are not sent back to it.",
		"Cette application a envoyé une adresse que le portail ne connaît pas. Par sécurité, vous n'y êtes pas renvoyé(e)."},
	"error.internal": {"The portal could not complete this step. Please try again later.",
		"Le portail n'a pas pu terminer cette étape. Veuillez réessayer plus tard."},
	"error.no_request": {"This sign-in has expired or was started in another browser. Go back to the app and start again.",
		"Cette connexion a expiré ou a été commencée dans un autre navigateur. Retournez à l'application et recommencez."},
	"error.csrf": {"This form has expired. Go back and try again.",
		"Ce formulaire a expiré. Revenez en arrière et réessayez."},
	"error.idp": {"The sign-in service of your organisation cannot be reached. Please try again later.",
		"Le service de connexion de votre organisation est injoignable. Veuillez réessayer plus tard."},
	"error.idp_refused": {"Your organisation's sign-in service did not sign you in.",
		"Le service de connexion de votre organisation ne vous a pas connecté(e)."},
	"error.no_fhir_user": {"Your account is not linked to a health record yet. Contact the clinic.",
		"Votre compte n'est pas encore lié à un dossier de santé. Contactez la clinique."},

	"login.title":               {"Sign in", "Connexion"},
	"login.intro":               {"%s wants to open your health record. Sign in to continue.", "%s souhaite ouvrir votre dossier de santé. Connectez-vous pour continuer."},
	"login.username":            {"Username", "Nom d'utilisateur"},
	"login.password":            {"Password", "Mot de passe"},
	"login.submit":              {"Sign in", "Se connecter"},
	"login.federated":           {"Sign in with %s", "Se connecter avec %s"},
	"login.or":                  {"or", "ou"},
	"login.register":            {"I have an invitation code", "J'ai un code d'invitation"},
	"login.failed":              {"The username or password is wrong, or the account is locked for a while. Try again later.", "Le nom d'utilisateur ou le mot de passe est incorrect, ou le compte est verrouillé pour un moment. Réessayez plus tard."},
	"login.throttled":           {"Too many attempts. Wait a few minutes and try again.", "Trop de tentatives. Attendez quelques minutes et réessayez."},
	"login.again":               {"Please sign in again.", "Veuillez vous reconnecter."},
	"otp.title":                 {"Security code", "Code de sécurité"},
	"otp.intro":                 {"Enter the 6-digit code from your authenticator app.", "Saisissez le code à 6 chiffres de votre application d'authentification."},
	"otp.code":                  {"Security code", "Code de sécurité"},
	"otp.submit":                {"Continue", "Continuer"},
	"otp.failed":                {"This code is not right. Try the new code your app shows.", "Ce code est incorrect. Essayez le nouveau code affiché par votre application."},
	"register.title":            {"Create your account", "Créer votre compte"},
	"register.intro":            {"The clinic gave you an invitation code after checking your identity. It can be used once.", "La clinique vous a remis un code d'invitation après avoir vérifié votre identité. Il ne sert qu'une fois."},
	"register.code":             {"Invitation code", "Code d'invitation"},
	"register.code_hint":        {"For example 7KQ2-M9XD-3RTA-F0WE", "Par exemple 7KQ2-M9XD-3RTA-F0WE"},
	"register.username":         {"Choose a username (your email address, for example)", "Choisissez un nom d'utilisateur (votre adresse courriel, par exemple)"},
	"register.password":         {"Choose a password (at least 10 characters)", "Choisissez un mot de passe (au moins 10 caractères)"},
	"register.password2":        {"Type the password again", "Retapez le mot de passe"},
	"register.submit":           {"Create my account", "Créer mon compte"},
	"register.code_missing":     {"Enter your invitation code.", "Saisissez votre code d'invitation."},
	"register.username_invalid": {"The username must have 3 to 128 characters, without spaces.", "Le nom d'utilisateur doit compter de 3 à 128 caractères, sans espaces."},
	"register.mismatch":         {"The two passwords differ.", "Les deux mots de passe diffèrent."},
	"register.code_invalid":     {"This invitation code is not valid: it may have been used or have expired. Ask the clinic for a new one.", "Ce code d'invitation n'est pas valide : il a peut-être déjà servi ou expiré. Demandez-en un nouveau à la clinique."},
	"register.username_taken":   {"This username is taken. Choose another one.", "Ce nom d'utilisateur est déjà pris. Choisissez-en un autre."},
	"password.too_short":        {"The password must have at least 10 characters.", "Le mot de passe doit compter au moins 10 caractères."},
	"password.too_long":         {"The password is too long.", "Le mot de passe est trop long."},

	"picker.title":     {"Whose record?", "Quel dossier ?"},
	"picker.intro":     {"Choose the person whose health record %s may open.", "Choisissez la personne dont %s pourra ouvrir le dossier de santé."},
	"picker.legend":    {"Health record", "Dossier de santé"},
	"picker.born":      {"born %s", "né(e) le %s"},
	"picker.self":      {"Your own record", "Votre propre dossier"},
	"picker.child":     {"Your child: parental access until %s", "Votre enfant : accès parental jusqu'au %s"},
	"picker.consent":   {"Shared with you by consent", "Partagé avec vous par consentement"},
	"picker.until":     {"until %s", "jusqu'au %s"},
	"picker.limited":   {"only: %s", "seulement : %s"},
	"picker.sensitive": {"Sensitive information is not shared with you.", "Les renseignements sensibles ne vous sont pas communiqués."},
	"picker.submit":    {"Continue", "Continuer"},
	"picker.cancel":    {"Cancel", "Annuler"},
	"picker.choose":    {"Choose one of the records.", "Choisissez l'un des dossiers."},

	"approve.title":    {"Allow access?", "Autoriser l'accès ?"},
	"approve.intro":    {"%s asks for access.", "%s demande l'accès."},
	"approve.patient":  {"Record: %s", "Dossier : %s"},
	"approve.info":     {"The app will also:", "L'application pourra aussi :"},
	"approve.legend":   {"What the app may do", "Ce que l'application pourra faire"},
	"approve.uncheck":  {"Uncheck what you do not want to allow.", "Décochez ce que vous ne voulez pas autoriser."},
	"approve.remember": {"Your choice is remembered for this app until you revoke it on the My apps page.", "Votre choix est retenu pour cette application jusqu'à ce que vous le révoquiez dans la page Mes applications."},
	"approve.allow":    {"Allow", "Autoriser"},
	"approve.deny":     {"Do not allow", "Ne pas autoriser"},

	"apps.title":  {"Apps with access", "Applications ayant accès"},
	"apps.intro":  {"These apps can open health records for you. Revoking an app ends its access at once.", "Ces applications peuvent ouvrir des dossiers de santé pour vous. Révoquer une application met fin à son accès immédiatement."},
	"apps.none":   {"No app has access.", "Aucune application n'a accès."},
	"apps.since":  {"Approved on %s", "Autorisée le %s"},
	"apps.revoke": {"Revoke access of %s", "Révoquer l'accès de %s"},
	"apps.user":   {"Signed in as %s", "Connecté(e) en tant que %s"},

	// Scopes in plain language.
	"scope.openid":         {"Confirm who you are", "Confirmer qui vous êtes"},
	"scope.fhirUser":       {"Know which record in the portal is yours", "Savoir quel dossier du portail est le vôtre"},
	"scope.launch":         {"Open with the context of your care team's system", "S'ouvrir dans le contexte du système de votre équipe soignante"},
	"scope.launch/patient": {"Know whose record is open", "Savoir quel dossier est ouvert"},
	"scope.offline_access": {"Keep access when you are not using it, until you revoke it", "Garder l'accès quand vous ne l'utilisez pas, jusqu'à ce que vous le révoquiez"},
	"scope.online_access":  {"Keep access while you stay signed in", "Garder l'accès tant que vous restez connecté(e)"},
	"scope.verbs.r":        {"see", "voir"},
	"scope.verbs.c":        {"add", "ajouter"},
	"scope.verbs.u":        {"change", "modifier"},
	"scope.verbs.d":        {"delete", "supprimer"},
	"scope.and":            {"and", "et"},
	"scope.in_patient":     {"in %s's record", "dans le dossier de %s"},
	"scope.in_record":      {"in the record", "dans le dossier"},
	"scope.user":           {"that you have access to", "auxquels vous avez accès"},
	"scope.system":         {"for the whole system", "pour tout le système"},
	"scope.only":           {"only where %s", "seulement si %s"},
}

// typeNames are resource types in plain language.
var typeNames = map[string][2]string{
	"*":                     {"your whole health record", "tout votre dossier de santé"},
	"Patient":               {"personal details (name, birth date, contact details)", "les renseignements personnels (nom, date de naissance, coordonnées)"},
	"Observation":           {"results and measurements (lab results, vital signs)", "les résultats et mesures (analyses, signes vitaux)"},
	"DiagnosticReport":      {"test reports", "les rapports d'examens"},
	"Condition":             {"health problems and diagnoses", "les problèmes de santé et diagnostics"},
	"AllergyIntolerance":    {"allergies", "les allergies"},
	"MedicationRequest":     {"prescriptions", "les ordonnances"},
	"MedicationStatement":   {"medications", "les médicaments"},
	"Medication":            {"medication details", "les détails des médicaments"},
	"Immunization":          {"vaccinations", "les vaccins"},
	"Procedure":             {"procedures", "les interventions"},
	"Encounter":             {"visits", "les visites"},
	"Appointment":           {"appointments", "les rendez-vous"},
	"AppointmentResponse":   {"answers to appointments", "les réponses aux rendez-vous"},
	"Communication":         {"messages", "les messages"},
	"CommunicationRequest":  {"message requests", "les demandes de messages"},
	"DocumentReference":     {"documents and notes", "les documents et notes"},
	"Binary":                {"attached files", "les fichiers joints"},
	"Media":                 {"images and recordings", "les images et enregistrements"},
	"ServiceRequest":        {"orders and referrals", "les demandes d'examens et orientations"},
	"CarePlan":              {"care plans", "les plans de soins"},
	"CareTeam":              {"care teams", "les équipes soignantes"},
	"Goal":                  {"health goals", "les objectifs de santé"},
	"QuestionnaireResponse": {"questionnaire answers", "les réponses aux questionnaires"},
	"Questionnaire":         {"questionnaires", "les questionnaires"},
	"AuditEvent":            {"the log of who opened the record", "le journal des accès au dossier"},
	"Practitioner":          {"names of care providers", "les noms des soignants"},
	"PractitionerRole":      {"roles of care providers", "les rôles des soignants"},
	"Organization":          {"organisations", "les organisations"},
	"Location":              {"places of care", "les lieux de soins"},
	"Coverage":              {"insurance coverage", "la couverture d'assurance"},
	"RelatedPerson":         {"related people (family, caregivers)", "les proches (famille, aidants)"},
	"Consent":               {"consents", "les consentements"},
}

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

func li(lang string) int {
	if lang == "fr" {
		return 1
	}
	return 0
}

// typeName is the plain-language name of a resource type.
func typeName(lang, typ string) string {
	if n, ok := typeNames[typ]; ok {
		return n[li(lang)]
	}
	return typ
}

// describeScope is a scope in plain language, e.g. "See results and
// measurements (lab results, vital signs) in Emma Lee's record". patient
// is the display name of the patient in context ("" when unknown).
func describeScope(lang, scope, patient string) string {
	if _, ok := messages["scope."+scope]; ok && !strings.Contains(scope, ".") {
		return msg(lang, "scope."+scope)
	}
	ps, err := smart.ParseScopes(scope)
	if err != nil || len(ps) != 1 || !ps[0].IsResource() {
		return scope
	}
	sc := ps[0]
	var verbs []string
	if sc.Perms&(smart.PermRead|smart.PermSearch) != 0 {
		verbs = append(verbs, msg(lang, "scope.verbs.r"))
	}
	for _, v := range []struct {
		p smart.Perms
		k string
	}{{smart.PermCreate, "c"}, {smart.PermUpdate, "u"}, {smart.PermDelete, "d"}} {
		if sc.Perms&v.p != 0 {
			verbs = append(verbs, msg(lang, "scope.verbs."+v.k))
		}
	}
	v := joinAnd(lang, verbs)
	out := strings.ToUpper(v[:1]) + v[1:] + " " + typeName(lang, sc.Type)
	switch sc.Context {
	case smart.ContextPatient:
		if patient != "" {
			out += " " + fmt.Sprintf(msg(lang, "scope.in_patient"), patient)
		} else {
			out += " " + msg(lang, "scope.in_record")
		}
	case smart.ContextUser:
		out += " " + msg(lang, "scope.user")
	case smart.ContextSystem:
		out += " " + msg(lang, "scope.system")
	}
	if sc.Query != nil {
		out += " (" + fmt.Sprintf(msg(lang, "scope.only"), queryText(sc.Query)) + ")"
	}
	return out
}

func joinAnd(lang string, w []string) string {
	switch len(w) {
	case 0:
		return ""
	case 1:
		return w[0]
	}
	return strings.Join(w[:len(w)-1], ", ") + " " + msg(lang, "scope.and") + " " + w[len(w)-1]
}

// queryText renders a granular scope's query: "category = laboratory".
func queryText(q url.Values) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		var vals []string
		for _, v := range q[k] {
			for _, x := range strings.Split(v, ",") {
				if i := strings.LastIndexByte(x, '|'); i >= 0 {
					x = x[i+1:]
				}
				vals = append(vals, x)
			}
		}
		parts = append(parts, k+" = "+strings.Join(vals, ", "))
	}
	return strings.Join(parts, "; ")
}
