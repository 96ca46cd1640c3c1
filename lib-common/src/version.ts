/** The conveyor release every tool reports with --version. */
export const VERSION = '0.1.0';
