// Validate XML files against an XML Schema with the JDK's own validator (javax.xml.validation),
// so that the tests need no XML library beyond what the machine has.
//
//     java ValidateXsd.java SCHEMA.xsd FILE.xml [FILE.xml ...]
//
// Prints "valid FILE" or "invalid FILE: line L column C: message" per file;
// exits 0 when every file is valid, 1 otherwise, 2 on bad usage.
import java.io.File;
import javax.xml.XMLConstants;
import javax.xml.transform.stream.StreamSource;
import javax.xml.validation.Schema;
import javax.xml.validation.SchemaFactory;
import javax.xml.validation.Validator;
import org.xml.sax.SAXParseException;

public class ValidateXsd {
    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: java ValidateXsd.java SCHEMA.xsd FILE.xml [FILE.xml ...]");
            System.exit(2);
        }
        SchemaFactory factory = SchemaFactory.newInstance(XMLConstants.W3C_XML_SCHEMA_NS_URI);
        Schema schema = factory.newSchema(new File(args[0]));
        boolean ok = true;
        for (int i = 1; i < args.length; i++) {
            Validator validator = schema.newValidator();
            try {
                validator.validate(new StreamSource(new File(args[i])));
                System.out.println("valid " + args[i]);
            } catch (SAXParseException e) {
                ok = false;
                System.out.println("invalid " + args[i] + ": line " + e.getLineNumber() + " column "
                        + e.getColumnNumber() + ": " + e.getMessage());
            }
        }
        System.exit(ok ? 0 : 1);
    }
}
