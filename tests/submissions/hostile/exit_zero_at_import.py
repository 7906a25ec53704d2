# hostile: exits with status 0 while being imported
# expect: score == 0
# reason: exited with status 0
import os

os._exit(0)
