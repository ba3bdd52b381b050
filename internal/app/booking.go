package app

// Online appointment booking (portal/booking, docs/booking.md): Slot/$find,
// Appointment/$book, $cancel, $reschedule and $approve on the pipeline, the
// Appointment write hook that sends patient-facing apps to them, under the
// policy file's booking: rules. Reminders of booked Appointments come from
// the notification feed (notify.go, FHIRGATE_REMINDER_LEAD).

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/policy"
	"github.com/fhirgate/fhirgate/portal/booking"
)

// startBooking registers the booking operations and the Appointment
// write hook (unless FHIRGATE_BOOKING=off).
func (a *App) startBooking(ctx context.Context, extra map[string]http.Handler) error {
	o := a.Opt.Booking
	if o.Off {
		return nil
	}
	svc, err := booking.New(booking.Config{
		Server: a.Server, Store: a.Store, Registry: a.Registry, Base: a.Opt.BaseURL, Proxy: a.Opt.Proxy,
		Rules:   func() *policy.Booking { return a.Server.Policy().Booking() }, // follows policy reloads
		FindMax: o.FindMax, Now: a.Opt.Now, Logger: a.Opt.Logger, BeforeCommit: o.beforeCommit,
	})
	if err != nil {
		return err
	}
	a.register("Appointment", svc.AppointmentHook, svc.Operations())
	return nil
}

// BookingOptions configure the service (Options.Booking). The booking
// rules themselves (which Schedules, how far ahead, how many, approval,
// cut-offs) are the policy file's booking: section (policy.Booking).
type BookingOptions struct {
	// Off (FHIRGATE_BOOKING=off): no booking operations and no
	// Appointment write hook (patient apps write Appointments as before).
	Off bool
	// FindMax (FHIRGATE_BOOKING_FIND_MAX, default 100, 1 to 1000): the
	// most Slots one Slot/$find returns.
	FindMax int

	// beforeCommit, for tests: booking.Config.BeforeCommit.
	beforeCommit func(op string)
}

// BookingFromEnv reads BookingOptions from the environment.
func BookingFromEnv(getenv func(string) string) (BookingOptions, error) {
	var o BookingOptions
	switch v := strings.ToLower(strings.TrimSpace(getenv("FHIRGATE_BOOKING"))); v {
	case "", "on", "true":
	case "off", "false":
		o.Off = true
	default:
		return o, fmt.Errorf("FHIRGATE_BOOKING: %q is not on or off", v)
	}
	if v := getenv("FHIRGATE_BOOKING_FIND_MAX"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return o, fmt.Errorf("FHIRGATE_BOOKING_FIND_MAX: %q is not an integer from 1 to 1000", v)
		}
		o.FindMax = n
	}
	return o, nil
}

// withBookingParams adds the service's search parameters to the registry:
// none, the core R4 parameters serve every query it runs (Slot schedule,
// status, start, service-type; Appointment slot, patient, status, date,
// _tag; Schedule actor, _id).
func withBookingParams(reg *search.Registry) (*search.Registry, error) { return reg, nil }
