package protocol

// ClientErr is an error to be sent to a TCP client: the wire code (E_INVALID,
// E_BAD_BODY...), a description and an optional cause that is logged but
// never sent. Every ClientErr closes the connection after it is sent.
type ClientErr struct {
	Code string
	Desc string
	Err  error
}

// NewClientErr returns a ClientErr with the given cause, code and description.
func NewClientErr(err error, code, desc string) *ClientErr {
	return &ClientErr{Code: code, Desc: desc, Err: err}
}

// Error returns exactly the text sent on the wire: "CODE description".
func (e *ClientErr) Error() string {
	return e.Code + " " + e.Desc
}

// Unwrap returns the cause.
func (e *ClientErr) Unwrap() error {
	return e.Err
}
