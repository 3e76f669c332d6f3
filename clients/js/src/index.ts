// @dcengine/client: join a dcengine call from a browser (or Node with an
// RTCPeerConnection polyfill) with the web quickstart's DataChannel API.
export * from "./wire.js";
export { joinCall, type JoinOptions } from "./join.js";
export {
  Call,
  DataChannelFeature,
  DataChannelReceiver,
  DataChannelSender,
  DEFAULT_CLIENT_CONFIG,
  Features,
  type CallEvents,
  type CallStats,
  type ClientConfig,
  type DataChannelEvents,
  type DataChannelMessage,
  type DataChannelSenderOptions,
  type ParticipantIdentifier,
  type ParticipantLike,
  type ReceiverCloseReason,
  type ReceiverEvents,
  type RemoteParticipant,
  type SenderCloseReason,
  type SenderEvents,
} from "./call.js";
export { DataChannelError, JoinError, type DataChannelErrorCode, type JoinErrorReason } from "./errors.js";
export { DEFAULT_TRAFFIC_POLICY, UNLIMITED_TRAFFIC_POLICY, type TrafficPolicy } from "./traffic.js";
