// LiveKit's Node Baseten plugin, unchanged, as a Node agent uses it:
//   node speak.mjs <model endpoint> <voice> <text>
// prints {"samples": n, "rate": r, "errors": [...]}: the audio it got, and the errors
// the plugin reported (the framework reports them as the TTS's "error" events).
import { initializeLogger } from "@livekit/agents";
import { TTS } from "@livekit/agents-plugin-baseten";

const [endpoint, voice, text] = process.argv.slice(2);
initializeLogger({ pretty: false, level: "fatal" });
const tts = new TTS({ modelEndpoint: endpoint, apiKey: "unused-locally", voice, maxTokens: 2000 });
const errors = [];
tts.on("error", (event) => errors.push(String(event.error ?? event)));
let samples = 0;
let rate = 0;
try {
  const stream = tts.synthesize(text, { maxRetry: 0, retryIntervalMs: 50, timeoutMs: 30000 });
  for await (const event of stream) {
    samples += event.frame.samplesPerChannel;
    rate = event.frame.sampleRate;
  }
} catch (error) {
  errors.push(String(error));
}
console.log(JSON.stringify({ samples, rate, errors }));
await tts.close();
process.exit(0);
