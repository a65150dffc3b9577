// Builds nothing and starts nothing by default: end-to-end suites start what they need (Azurite, daemon)
// themselves. Kept so suites can share one-time setup later.
export default function setup(): void {}
