// `primal/kernel`: rich display and training-display controls for notebooks, and the
// kernelspec installer. In a cell:
//   import { show } from "primal/kernel";
//   show(plots.loss(t.run)); show(t.layers());
export {
  DisplayHandle,
  figureBundle,
  inKernel,
  isArrowTable,
  isFigure,
  resetPlotlyInlining,
  richBundle,
  sendBundle,
  show,
  tableBundle,
  type ArrowTableLike,
  type FigureBundleOptions,
  type MimeBundle,
  type ShowOptions,
  type TableBundleOptions,
} from "./display.js";
export {
  activeTrainers,
  interruptTraining,
  liveTraining,
  TrainingInterrupted,
  type LiveTrainingOptions,
} from "./training.js";
export {
  installKernel,
  kernelJson,
  kernelsDir,
  KERNEL_DISPLAY_NAME,
  KERNEL_NAME,
  uninstallKernel,
  type KernelInstallOptions,
  type KernelLocationOptions,
} from "./install.js";
