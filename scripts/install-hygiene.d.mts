// Types of scripts/install-hygiene.mjs (for the TypeScript tests that import it).
export function installedAsDependency(root: string): boolean;
export function diskBytes(path: string): number;
export function slimBuild(buildDir: string, alsoKeep?: string[]): { before: number; after: number } | null;
