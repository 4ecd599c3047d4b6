package events

// ErrNewerVersion is the ErrUnknownVersion of an event whose schema version
// is above the newest this build knows: a producer already deployed with a
// newer schema, not a broken event, so a consumer may wait for its own
// upgrade rather than give up on it. errors.Is(ErrNewerVersion,
// ErrUnknownVersion) holds, so code that checks ErrUnknownVersion still
// sees it.
var ErrNewerVersion error = newerVersionError{}

type newerVersionError struct{}

func (newerVersionError) Error() string {
	return "unknown schema version (newer than this build knows)"
}

func (newerVersionError) Is(target error) bool { return target == ErrUnknownVersion }

// unknownVersion is the sentinel for a version this build cannot read whose
// newest known version is current: ErrNewerVersion above it, ErrUnknownVersion
// otherwise (below 1).
func unknownVersion(version, current int) error {
	if version > current {
		return ErrNewerVersion
	}
	return ErrUnknownVersion
}
