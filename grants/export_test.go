package grants

// Timers is the sweeper's source of its leader loop's ticker and Run's timer.
type Timers = timers

// SetTimers makes s use t for its leader loop's ticker and Run's timer; call it before Run.
func (s *Sweeper) SetTimers(t Timers) { s.timers = t }

// OtherText is the access-remains detail for the objects of other access.
var OtherText = otherText
