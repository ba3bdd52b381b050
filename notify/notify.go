// Package notify delivers notifications that carry no personal health
// information: emails through SMTP ("You have a new message in your
// portal" and a link) and FHIR Subscription rest-hook calls, from a
// durable outbox kept in the store's database, so that nothing is lost
// across a restart and nothing is sent twice for one key.
//
// This file is the contract the rest of fhirgate codes against (the
// messaging rules, eVisit invitations, Subscriptions); the outbox, its
// storage, the delivery worker and the change feed that turns committed
// writes into notifications live beside it.
package notify

import (
	"context"
	"time"
)

// Channel is how a notification travels.
type Channel string

const (
	Email    Channel = "email"     // SMTP (FHIRGATE_SMTP_URL)
	RestHook Channel = "rest-hook" // HTTP POST (R4 Subscription.channel.type rest-hook)
)

// Notification is one delivery to make.
type Notification struct {
	// Key makes Enqueue idempotent: a key enqueued before (delivered or
	// not) is not enqueued again. E.g. "message/Communication/12/1/Patient/7".
	Key     string
	Channel Channel
	// To is the email address, or the rest-hook endpoint URL.
	To string
	// Email: the template ("message", "result", "reminder", "invitation",
	// ...), its language ("en", "fr") and the one link it carries. The
	// templates hold no name, code, value, clinic or physician.
	Template string
	Lang     string
	Link     string
	// Rest-hook: the headers (Subscription.channel.header) and body.
	Headers map[string]string
	Body    []byte
	// NotBefore delays delivery (appointment reminders); Expires, when
	// set, drops a notification not delivered by then.
	NotBefore time.Time
	Expires   time.Time
	// Cond, when set, is checked just before delivery (Options.Check of
	// the delivery worker): false skips the notification. E.g. an
	// appointment reminder holds "Appointment/5|booked|<start>", so a
	// cancelled or moved appointment gets no reminder.
	Cond string `json:",omitempty"`
}

// Outbox accepts notifications for durable, retried delivery.
type Outbox interface {
	Enqueue(ctx context.Context, ns ...Notification) error
}
