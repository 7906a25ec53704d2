# hostile: raises SystemExit while being imported
# expect: score == 0
# reason: SystemExit
import sys

sys.exit("bye")
