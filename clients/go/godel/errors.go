package godel

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Error is a failed call: its gRPC code and message, and the details the server sent
// (google.rpc.ErrorInfo, google.rpc.BadRequest). Compare codes with errors.Is(err, ErrNotFound)
// and read the details with errors.As(err, &godelErr).
type Error struct {
	Code    codes.Code
	Message string
	// From google.rpc.ErrorInfo, e.g. Reason "LAST_ADMIN_KEY", Domain "godel".
	Reason   string
	Domain   string
	Metadata map[string]string
	// From google.rpc.BadRequest: the fields that were wrong, e.g. {"task", "is required"}.
	FieldViolations []FieldViolation

	status *status.Status
}

// FieldViolation names one bad field of a request and says what is wrong with it.
type FieldViolation struct {
	Field       string
	Description string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("godel: %s: %s", e.Code, e.Message)
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	for _, v := range e.FieldViolations {
		s += fmt.Sprintf("; %s: %s", v.Field, v.Description)
	}
	return s
}

// GRPCStatus lets status.FromError and status.Code read an *Error.
func (e *Error) GRPCStatus() *status.Status {
	if e.status == nil {
		return status.New(e.Code, e.Message)
	}
	return e.status
}

// Is matches the sentinel of the same code (ErrNotFound, ...).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.status == nil && t.Message == "" && t.Code == e.Code
}

// Sentinels for errors.Is, one per code Godel answers with.
var (
	ErrInvalidArgument    = &Error{Code: codes.InvalidArgument}
	ErrUnauthenticated    = &Error{Code: codes.Unauthenticated}
	ErrPermissionDenied   = &Error{Code: codes.PermissionDenied}
	ErrNotFound           = &Error{Code: codes.NotFound}
	ErrAlreadyExists      = &Error{Code: codes.AlreadyExists}
	ErrFailedPrecondition = &Error{Code: codes.FailedPrecondition}
	ErrAborted            = &Error{Code: codes.Aborted}
	ErrResourceExhausted  = &Error{Code: codes.ResourceExhausted}
	ErrUnimplemented      = &Error{Code: codes.Unimplemented}
	ErrUnavailable        = &Error{Code: codes.Unavailable}
	ErrDeadlineExceeded   = &Error{Code: codes.DeadlineExceeded}
)

// asError turns a gRPC status error into an *Error (nil, io.EOF and other errors pass).
func asError(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	return fromStatus(st)
}

func fromStatus(st *status.Status) *Error {
	e := &Error{Code: st.Code(), Message: st.Message(), status: st}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			e.Reason, e.Domain, e.Metadata = d.GetReason(), d.GetDomain(), d.GetMetadata()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				e.FieldViolations = append(e.FieldViolations, FieldViolation{v.GetField(), v.GetDescription()})
			}
		}
	}
	return e
}
