package namespaces

// Observer is told what happens, for metrics. Implemented in package server.
type Observer interface {
	// EventHandled counts a routed event by router event name ("unknown" for
	// unregistered names) and result ("ok" or an error code).
	EventHandled(event, result string)
	// Delivered counts one delivery (one room emit) of event.
	Delivered(event string)
	// AuthFailed counts a refused connection by reason.
	AuthFailed(reason string)
}

type nopObserver struct{}

func (nopObserver) EventHandled(string, string) {}
func (nopObserver) Delivered(string)            {}
func (nopObserver) AuthFailed(string)           {}
