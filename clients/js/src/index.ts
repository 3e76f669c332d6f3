/** @dcengine/client: the browser client for dcengine. So far, its wire codec. */
export * from "./wire.js";
