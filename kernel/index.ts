// `primal/kernel`: rich display and training-display controls for notebooks, and the
// kernelspec installer. In a cell:
//   import { show } from "primal/kernel";
//   show(plots.loss(t.run)); show(t.layers());
export {
  DisplayHandle,
  displayBundle,
  displayMode,
  setDisplay,
  type DisplayMode,
  displayableFigure,
  displayableTable,
  figureBundle,
  figureBundleStatic,
  inKernel,
  isArrowTable,
  isDisplayable,
  isFigure,
  JUPYTER_DISPLAY,
  richBundle,
  sendBundle,
  show,
  tableBundle,
  type ArrowTableLike,
  type Displayable,
  type MimeBundle,
  type ShowOptions,
  type TableBundleOptions,
} from "./display.js";
export {
  activeTrainers,
  cellSignal,
  EvaluationInterrupted,
  Interrupted,
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
