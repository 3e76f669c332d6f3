// The DataChannel feature's errors, named as the product documents name them.

/**
 * The error codes: the six of the product (`DataChannelFailedToStart` …
 * `DataChannelMessageFailureForTrafficLimit`), and the client's own for
 * misuse and for joining.
 */
export type DataChannelErrorCode =
  /** The call is not (or no longer) connected: no sender can start. */
  | "DataChannelFailedToStart"
  /** Every random channel id is in use by this participant's senders. */
  | "DataChannelRandomIdNotAvailable"
  /** The sender was closed (by `close()`, a newer sender on its id, the server, or the call ending). */
  | "DataChannelSenderClosed"
  /** The message is larger than `maxMessageSizeInBytes`. */
  | "DataChannelMessageSizeOverLimit"
  /** A Durable message could not be queued: the sender's queue is full. */
  | "DataChannelMessageFailureForBandwidth"
  /** Sending now would break the traffic-limit rules. */
  | "DataChannelMessageFailureForTrafficLimit"
  /** A participant identifier is empty or longer than 255 bytes (UTF-8). */
  | "DataChannelInvalidParticipantId"
  /** More than 64 participants were given. */
  | "DataChannelTooManyParticipants"
  /** The call has as many senders open as the server admits. */
  | "DataChannelTooManySenders";

/** An error of the DataChannel feature; `code` says which. */
export class DataChannelError extends Error {
  /** Which error. */
  readonly code: DataChannelErrorCode;

  constructor(code: DataChannelErrorCode, message: string) {
    super(message);
    this.code = code;
    this.name = code;
  }
}

/** Why joining a call failed: `reason` says which step, `message` what happened. */
export type JoinErrorReason =
  /** The server refused the join token (HTTP 401 from signalling). */
  | "unauthorized"
  /** The signalling request failed or was refused otherwise (`status` has the HTTP status). */
  | "signalling"
  /** The server refused the join (`code` has the protocol's error code). */
  | "rejected"
  /** ICE, DTLS or SCTP did not come up, or the connection dropped while joining. */
  | "transport"
  /** Nothing happened within `timeoutMs`. */
  | "timeout"
  /** The options are unusable (no RTCPeerConnection, no url nor signal, bad token). */
  | "options";

/** Joining a call failed. */
export class JoinError extends Error {
  /** Which step failed. */
  readonly reason: JoinErrorReason;
  /** The HTTP status, for `signalling`. */
  readonly status: number | undefined;
  /** The protocol error code (`ErrorCode`), for `rejected`. */
  readonly code: number | undefined;

  constructor(reason: JoinErrorReason, message: string, extra: { status?: number; code?: number } = {}) {
    super(message);
    this.name = "JoinError";
    this.reason = reason;
    this.status = extra.status;
    this.code = extra.code;
  }
}
